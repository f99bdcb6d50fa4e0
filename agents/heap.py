"""Handing the memory the worker freed back to the system.

glibc keeps freed memory in its arenas for reuse, and a worker frees a lot: every batch
(decoded messages, librdkafka's fetched and produced buffers, RocksDB's flushed
memtables) is allocated on one thread and released on another. Measured with
``benchmarks/memory.py`` at 1M stored events, one ``malloc_trim(0)`` took the worker's
RSS from 523 to 355 MiB. A thread calls it every ``interval_s``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (musl, macOS: nothing to call)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim: Callable[[int], int] | None = getattr(ctypes.CDLL(name), "malloc_trim", None)
    return trim


class HeapTrimmer:
    name = "heap-trim"

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._trim = _malloc_trim()
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
