"""Wire format of the ingest topic: encoding for producers, decoding and checking for agents.

Values are JSON (orjson), decoded once per message. ``decode_ingest`` never raises on bad
input: it returns the command, or a sentence saying what is wrong with the message,
which becomes the dead letter's reason. The format is documented in ``SCHEMAS.md``.
"""

from __future__ import annotations

from typing import Any

import orjson

from state.commands import Command, Delete, Insert, JSONValue, Update, event_key
from state.models import model_key

OPS = ("insert", "update", "delete")


def ingest_key(project_id: str, model_id: str, event_id: str) -> bytes:
    return event_key(model_key(project_id, model_id), event_id).encode()


def encode_ingest(
    op: str,
    project_id: str,
    model_id: str,
    event_id: str,
    event: dict[str, JSONValue] | None = None,
    event_timestamp: int | None = None,
) -> bytes:
    message: dict[str, Any] = {
        "op": op, "project_id": project_id, "model_id": model_id, "event_id": event_id,
    }  # fmt: skip
    if event is not None:
        message["event"] = event
    if event_timestamp is not None:
        message["event_timestamp"] = event_timestamp
    return orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def decode_ingest(
    key: bytes | None,
    value: bytes | None,
    *,
    received_ms: int,
    offset: int,
    ref: int,
    max_bytes: int,
) -> Command | str:
    """The command a message asks for, or why it cannot be applied."""
    if value is None:
        return "empty message value (a tombstone is not an ingest operation)"
    if len(value) > max_bytes:
        return f"message of {len(value)} bytes exceeds the limit of {max_bytes} bytes"
    try:
        message = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        return f"value is not valid JSON: {error}"
    if not isinstance(message, dict):
        return f"value must be a JSON object, got {type(message).__name__}"
    op = message.get("op")
    if op not in OPS:
        return f"'op' must be one of {', '.join(OPS)}; got {op!r}"
    envelope = _envelope(message)
    if isinstance(envelope, str):
        return envelope
    model, event_id = envelope
    expected_key = event_key(model, event_id).encode()
    if key != expected_key:
        return (
            f"message key must be {expected_key.decode()!r} (project_id/model_id/event_id) "
            f"so that all operations on one event share a partition; got {key!r}"
        )
    if op == "delete":
        return Delete(model, event_id, received_ms, offset, ref)
    event = message.get("event")
    if not isinstance(event, dict):
        return f"{op} needs 'event', a JSON object of column values; got {event!r}"
    timestamp = message.get("event_timestamp")
    if timestamp is not None and (
        isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0
    ):
        return (
            "'event_timestamp' must be UTC milliseconds since the epoch (a non-negative "
            f"integer); got {timestamp!r}"
        )
    if op == "insert":
        return Insert(model, event_id, event, timestamp, received_ms, offset, ref)
    return Update(model, event_id, event, timestamp, received_ms, offset, ref)


def _envelope(message: dict[str, Any]) -> tuple[str, str] | str:
    for field_name in ("project_id", "model_id"):
        value = message.get(field_name)
        if not isinstance(value, str) or not value or "/" in value:
            return f"{field_name!r} must be a non-empty string without '/'; got {value!r}"
    event_id = message.get("event_id")
    if isinstance(event_id, int) and not isinstance(event_id, bool):
        event_id = str(event_id)
    if not isinstance(event_id, str) or not event_id:
        what = "an update" if message.get("op") == "update" else "every message"
        return f"{what} needs 'event_id', a non-empty string; got {event_id!r}"
    return model_key(message["project_id"], message["model_id"]), event_id


def encode_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def decode_json(value: bytes | str) -> Any:
    return orjson.loads(value)
