"""Handing the memory the worker freed back to the system.

glibc keeps freed memory in its arenas for reuse, and a worker frees a lot: every batch
(decoded messages, librdkafka's fetched and produced buffers, RocksDB's flushed
memtables) is allocated on one thread and released on another. Measured with
``benchmarks/memory.py`` at 1M stored events, one ``malloc_trim(0)`` took the worker's
RSS from 523 to 355 MiB. A thread calls it every ``interval_s``.

glibc also gives each thread that contends for the heap an arena of its own, up to 8
per core, and a worker runs dozens of threads (librdkafka's, the runners', the commit
pools'): each arena keeps its own free memory. With 2 arenas, the worker's RSS at lag
zero after a backlog was 490 -> 438 MiB at 1M and 531 -> 465 MiB at 2M stored events.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# mallopt's parameter for the most arenas (glibc's malloc.h).
_M_ARENA_MAX = -8


def _glibc(function: str) -> Callable[..., int] | None:
    """A glibc function, or None (musl, macOS: nothing to call)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    found: Callable[..., int] | None = getattr(ctypes.CDLL(name), function, None)
    return found


def limit_arenas(arenas: int) -> bool:
    """At most ``arenas`` malloc arenas from now on (0: glibc's default); whether glibc
    took it. Call before the process starts its threads: arenas made before stay."""
    mallopt = _glibc("mallopt")
    if arenas <= 0 or mallopt is None:
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


class HeapTrimmer:
    name = "heap-trim"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._trim = _glibc("malloc_trim")
        self._stop = threading.Event()

    def run(self) -> None:
        if self._trim is None or self.interval_s <= 0:
            log.debug("heap trimming off (interval %s s, malloc_trim %s)",
                      self.interval_s, self._trim)  # fmt: skip
            return
        while not self._stop.wait(self.interval_s):
            self.trim()

    def trim(self) -> None:
        if self._trim is not None:
            started = time.perf_counter()
            self._trim(0)
            log.debug("malloc_trim took %.1f ms", (time.perf_counter() - started) * 1000)

    def stop(self) -> None:
        self._stop.set()
