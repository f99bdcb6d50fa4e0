"""Logging an outage of a dependency a few times, not once per retry.

A worker waits out a broker or Redis outage of any length by retrying; logged per retry,
a 30 s broker outage wrote ~2,200 ERROR lines. An ``OutageLog`` says when an outage
begins, reminds at most once per ``remind_s`` while it lasts (with how many failures it
absorbed), and says when it ends and how long it took.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class OutageLog:
    what: str
    logger: logging.Logger
    remind_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _since: float | None = field(default=None, init=False)
    _reminded: float = field(default=0.0, init=False)
    _failures: int = field(default=0, init=False)

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, error: object) -> None:
        now = self.clock()
        self._failures += 1
        if self._since is None:
            self._since, self._reminded = now, now
            self.logger.warning("%s: unavailable, waiting it out: %s", self.what, error)
        elif now - self._reminded >= self.remind_s:
            self._reminded = now
            self.logger.warning(
                "%s: still unavailable after %.0f s (%d failed attempts): %s",
                self.what, now - self._since, self._failures, error,
            )  # fmt: skip

    def recovered(self) -> None:
        if self._since is None:
            return
        self.logger.warning(
            "%s: available again after %.0f s (%d failed attempts)",
            self.what, self.clock() - self._since, self._failures,
        )  # fmt: skip
        self._since, self._failures = None, 0


@dataclass
class Backoff:
    """Exponential waits between retries, reset by a success."""

    first_s: float = 0.1
    most_s: float = 5.0
    _next: float = field(default=0.0, init=False)

    def next_wait(self) -> float:
        self._next = self.first_s if self._next == 0 else min(self._next * 2, self.most_s)
        return self._next

    def reset(self) -> None:
        self._next = 0.0
