"""Column values of the shapes that once crashed a worker, for the tests that show each is
refused with a reason (or kept) on every path."""

from __future__ import annotations

from typing import Any


def nested(depth: int) -> Any:
    """``1`` inside ``depth`` lists: ``nested(2) == [[1]]``."""
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value
