"""Waiting out an outage of a dependency (Redis): a backoff, and a log that stays readable.

A loop that retries every second would otherwise write a line per retry for as long as
the outage lasts, burying everything else. ``OutageLog`` writes one line when the outage
starts, at most one a minute while it lasts, and one when it ends. The clock is injected
so that the rate limit is testable without waiting. It is here, below the workers and the
API, since both wait out Redis.

Every wait for a dependency goes through one, so it also keeps the process's
``driftline_dependency_up`` gauge: 0 when an outage starts, 1 on every success.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from driftline.topics.service_metrics import DEPENDENCY_UP

# Retries start quickly (a blip is over at once) and slow down to this, so that a
# dependency that comes back is used again within a couple of seconds.
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
# While an outage lasts, it is logged again at most this often.
REPEAT_EVERY_S = 60.0


def backoff_s(
    failures: int, first_s: float = BACKOFF_FIRST_S, max_s: float = BACKOFF_MAX_S
) -> float:
    """The wait after ``failures`` consecutive failures (1 or more): doubling, capped."""
    if failures <= 0:
        return 0.0
    return min(max_s, first_s * 2.0 ** min(failures - 1, 32))


class OutageLog:
    """Tracks one dependency's outage as seen by one user of it; thread-safe.

    ``what`` names the dependency as logged ("Kafka", "Redis", "PostgreSQL"); lowercased,
    it is the ``dependency`` label of ``driftline_dependency_up``.
    """

    def __init__(
        self,
        logger: logging.Logger,
        who: str,
        what: str,
        consequence: str,
        clock: Callable[[], float] = time.monotonic,
        repeat_every_s: float = REPEAT_EVERY_S,
    ) -> None:
        self._log = logger
        self._who = who
        self._what = what
        self._consequence = consequence
        self._clock = clock
        self._repeat_every_s = repeat_every_s
        # Its gauge's series appears at the first attempt: before, nothing is known.
        self._dependency = what.lower()
        self._lock = threading.Lock()
        self._since: float | None = None
        self._logged_at = 0.0
        self.failures = 0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, error: object) -> float:
        """Record a failure; returns how long to wait before the next attempt."""
        with self._lock:
            now = self._clock()
            self.failures += 1
            DEPENDENCY_UP.labels(self._dependency).set(0)
            if self._since is None:
                self._since = self._logged_at = now
                self._log.warning(
                    "%s: %s is unavailable (%s); %s, retrying", self._who, self._what,
                    _short(error), self._consequence,
                )  # fmt: skip
            elif now - self._logged_at >= self._repeat_every_s:
                self._logged_at = now
                self._log.warning(
                    "%s: %s still unavailable after %.0f s (%s, %d attempts)",
                    self._who, self._what, now - self._since, _short(error), self.failures,
                )  # fmt: skip
            return backoff_s(self.failures)

    def succeeded(self) -> None:
        """Record a success; the end of an outage is logged once."""
        DEPENDENCY_UP.labels(self._dependency).set(1)
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            if self._since is None:
                return
            self._log.warning(
                "%s: %s answers again after %.1f s (%d failed attempts)",
                self._who, self._what, self._clock() - self._since, self.failures,
            )  # fmt: skip
            self._since = None
            self.failures = 0


def _short(error: object) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:200] + "…"
