"""Polling with a deadline: the only way the topic admin, the stack and the tests wait.

It lives with the topics, the lowest layer that waits (for partition leaders, for a
consumer group to catch up), so that the stack and the tests above it share it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], bool], *, timeout_s: float, what: str, interval_s: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)
