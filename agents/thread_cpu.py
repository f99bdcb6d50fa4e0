"""The CPU time other threads of the worker use, read from their own CPU clocks.

The stages of a worker share one interpreter. The bins stage's emissions set off work in
other threads (the Redis and PostgreSQL projections, the alert evaluator), which costs
several times what the emission itself costs. The bins stage's emission budget counts it
by reading those threads' clocks (``pthread_getcpuclockid``): no stage has to report it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection


class ThreadsCpu:
    """The CPU time (ms) the threads named ``names`` used since the last reading; a thread
    named ``<name>-<anything>`` (a runner's commit pool) counts as ``name``'s."""

    def __init__(self, names: Collection[str]) -> None:
        self._names = tuple(names)
        self._prefixes = tuple(f"{name}-" for name in names)
        # Per thread ident: its CPU time (ms) at the last reading.
        self._read_ms: dict[int, float] = {}

    def used_ms(self) -> float:
        """The CPU time used since the last call. A thread's first reading only sets its
        starting point: what it used before is not this budget's to count."""
        used = 0.0
        read: dict[int, float] = {}
        for thread in threading.enumerate():
            ident = thread.ident
            if ident is None or not (
                thread.name in self._names or thread.name.startswith(self._prefixes)
            ):
                continue
            now_ms = _thread_cpu_ms(ident)
            if now_ms is None:
                continue
            read[ident] = now_ms
            used += max(0.0, now_ms - self._read_ms.get(ident, now_ms))
        self._read_ms = read
        return used


def _thread_cpu_ms(ident: int) -> float | None:
    """The thread's CPU time; None when it ended meanwhile (its clock is gone)."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident)) * 1000
    except OSError:
        return None
