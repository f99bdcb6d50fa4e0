"""Notifications given up on: ``<prefix>.notification-dead-letters``, keyed by change id.

A notification that still failed after its retries (``agents.notifier``) is written here
rather than retried for ever, so a dead receiver never holds the notifier back; its count
is what ``GET /v1/status`` reports as failed notifications. Value: a JSON object naming
the change, the channel (type and URL, never its secret), the attempts made and the last
failure (SCHEMAS.md).
"""

from __future__ import annotations

from typing import Any

import orjson

from driftline.state.tables import Codec


def _decoded(raw: bytes) -> dict[str, Any]:
    record = orjson.loads(raw)
    if not isinstance(record, dict):
        raise ValueError("not a notification dead letter: expected a JSON object")
    return record


NOTIFICATION_DEAD_LETTER: Codec[dict[str, Any]] = Codec(orjson.dumps, _decoded)
