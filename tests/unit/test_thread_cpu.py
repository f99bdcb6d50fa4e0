"""``ThreadsCpu``: the CPU time of the named threads, read from their own clocks."""

from __future__ import annotations

import threading
import time

from driftline.agents.thread_cpu import ThreadsCpu


def _burn_until(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


def _burning(name: str, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=_burn_until, args=(stop,), name=name, daemon=True)
    thread.start()
    return thread


def test_counts_the_named_threads_and_their_pools_only() -> None:
    stop = threading.Event()
    counted = ThreadsCpu(["serving"])
    others = ThreadsCpu(["postgres-bins"])
    threads = [_burning("serving", stop), _burning("serving-txn_0", stop)]
    try:
        assert counted.used_ms() == 0.0  # the first reading only sets the start
        others.used_ms()
        time.sleep(0.3)
        used_ms = counted.used_ms()
        # Two threads that never sleep use at least a tenth of the time between them,
        # even on a loaded machine, and no more than they had.
        assert 30 <= used_ms <= 2 * 300 + 50
        assert others.used_ms() == 0.0  # its threads do not run
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert counted.used_ms() >= 0.0  # ended threads are dropped, not an error
