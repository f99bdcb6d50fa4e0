"""Points in time as users write them in queries: UTC milliseconds or ISO-8601 with a zone.

The worker's views and the REST API accept the same forms, with the same messages.
"""

from __future__ import annotations

from datetime import datetime

from state.wording import shown


def parse_instant(raw: str | None, name: str) -> int:
    """UTC milliseconds since the epoch; ValueError says what to change."""
    if raw is None or raw == "":
        raise ValueError(f"query parameter '{name}' is required (UTC ms or ISO-8601)")
    if raw.isdigit():
        return int(raw)
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name}={shown(raw)} is neither UTC milliseconds nor ISO-8601") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{name}={shown(raw)} has no time zone; add one (e.g. +00:00 or Z)")
    millis = int(parsed.timestamp() * 1000)
    if millis < 0:
        raise ValueError(f"{name}={shown(raw)} is before 1970")
    return millis
