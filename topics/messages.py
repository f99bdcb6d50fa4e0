"""Wire format of the ingest topic: encoding for producers, decoding and checking for agents.

Values are JSON (orjson), decoded once per message. ``decode_ingest`` never raises on bad
input: it returns the command, or a sentence saying what is wrong with the message,
which becomes the dead letter's reason. The format is documented in ``SCHEMAS.md``.
"""

from __future__ import annotations

from typing import Any

import orjson

from driftline.state import exact_json
from driftline.state.commands import (
    Command,
    ContinueDeletion,
    Delete,
    DeleteIds,
    DeleteRange,
    DeletionCommand,
    Insert,
    JSONValue,
    RebuildBins,
    Update,
    event_id_of,
    event_key,
    nesting_problem,
)
from driftline.state.instants import epoch_ms, epoch_ms_problem
from driftline.state.names import model_key, name_problem, split_model_key

OPS = ("insert", "update", "delete")
# Commands about many events of one model, sent by the API to chosen partitions.
DELETION_OPS = ("delete_ids", "delete_range", "delete_continue")
# Recompute a model's bins from the stored events (``driftline replay bins``), to every
# partition.
REBUILD_OPS = ("rebuild_bins",)
# Header of a message the merge agent moved to its key's partition: "partition:offset"
# where it first arrived (the API's status reads it to know the copies are applied).
FORWARDED_FROM = "driftline.forwarded-from"


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
    return exact_json.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def encode_delete(
    project_id: str, model_id: str, event_id: str, *, update_metrics: bool = False
) -> bytes:
    message = {"op": "delete", "project_id": project_id, "model_id": model_id,
               "event_id": event_id, "update_metrics": update_metrics}  # fmt: skip
    return orjson.dumps(message)


def deletion_key(project_id: str, model_id: str) -> bytes:
    """Key of the commands about many events: the model (their partition is chosen)."""
    return model_key(project_id, model_id).encode()


def encode_delete_ids(
    project_id: str, model_id: str, deletion_id: str, event_ids: list[str], update_metrics: bool
) -> bytes:
    return orjson.dumps(
        {"op": "delete_ids", "project_id": project_id, "model_id": model_id,
         "deletion_id": deletion_id, "event_ids": event_ids, "update_metrics": update_metrics}
    )  # fmt: skip


def id_chunks(event_ids: list[str], max_bytes: int) -> list[list[str]]:
    """Split ids into lists whose delete_ids message stays within ``max_bytes``.

    Half the limit leaves room for the envelope and for JSON escapes.
    """
    budget = max_bytes // 2
    chunks: list[list[str]] = [[]]
    size = 0
    for event_id in event_ids:
        cost = len(event_id.encode()) + 4
        if chunks[-1] and size + cost > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(event_id)
        size += cost
    return [chunk for chunk in chunks if chunk]


def encode_delete_range(
    project_id: str,
    model_id: str,
    deletion_id: str,
    start_ms: int,
    end_ms: int,
    update_metrics: bool,
) -> bytes:
    return orjson.dumps(
        {"op": "delete_range", "project_id": project_id, "model_id": model_id,
         "deletion_id": deletion_id, "start_time": start_ms, "end_time": end_ms,
         "update_metrics": update_metrics}
    )  # fmt: skip


def encode_continue_deletion(model: str, deletion_id: str) -> bytes:
    project_id, model_id = split_model_key(model)
    return orjson.dumps(
        {"op": "delete_continue", "project_id": project_id, "model_id": model_id,
         "deletion_id": deletion_id}
    )  # fmt: skip


def encode_rebuild_bins(project_id: str, model_id: str, generation: int = 0) -> bytes:
    message: dict[str, Any] = {"op": "rebuild_bins", "project_id": project_id, "model_id": model_id}
    if generation:
        message["generation"] = generation
    return orjson.dumps(message)


def decode_ingest(
    key: bytes | None,
    value: bytes | None,
    *,
    received_ms: int,
    offset: int,
    ref: int,
    max_bytes: int,
) -> Command | DeletionCommand | RebuildBins | str:
    """The command a message asks for, or why it cannot be applied."""
    if value is None:
        return "empty message value (a tombstone is not an ingest operation)"
    if len(value) > max_bytes:
        return f"message of {len(value)} bytes exceeds the limit of {max_bytes} bytes"
    try:
        message = exact_json.loads(value)
    except exact_json.JSONError as error:
        return f"value is not valid JSON: {error}"
    if not isinstance(message, dict):
        return f"value must be a JSON object, got {type(message).__name__}"
    op = message.get("op")
    if op in DELETION_OPS:
        return _deletion_command(key, message, offset, ref)
    if op in REBUILD_OPS:
        return _rebuild_command(key, message, offset, ref)
    if op not in OPS:
        known = ", ".join(OPS + DELETION_OPS + REBUILD_OPS)
        return f"'op' must be one of {known}; got {_quoted(op)}"
    envelope = _envelope(message)
    if isinstance(envelope, str):
        return envelope
    model, event_id = envelope
    expected_key = event_key(model, event_id).encode()
    if key != expected_key:
        return (
            f"message key must be {expected_key.decode()!r} (project_id/model_id/event_id) "
            f"so that all operations on one event share a partition; got {_quoted(key)}"
        )
    if op == "delete":
        update_metrics = message.get("update_metrics", False)
        if not isinstance(update_metrics, bool):
            return f"'update_metrics' must be true or false; got {_quoted(update_metrics)}"
        return Delete(model, event_id, received_ms, offset, ref, update_metrics)
    event = message.get("event")
    if not isinstance(event, dict):
        return f"{op} needs 'event', a JSON object of column values; got {_quoted(event)}"
    too_deep = nesting_problem(event)
    if too_deep is not None:
        return too_deep
    timestamp = message.get("event_timestamp")
    problem = None if timestamp is None else epoch_ms_problem(timestamp, "'event_timestamp'")
    if problem is not None:
        return problem
    if op == "insert":
        return Insert(model, event_id, event, timestamp, received_ms, offset, ref)
    return Update(model, event_id, event, timestamp, received_ms, offset, ref)


def _envelope(message: dict[str, Any]) -> tuple[str, str] | str:
    problem = _model_problem(message)
    if problem is not None:
        return problem
    raw_id = message.get("event_id")
    event_id = event_id_of(raw_id)
    if event_id is None:
        what = "an update" if message.get("op") == "update" else "every message"
        return f"{what} needs 'event_id', a non-empty string; got {_quoted(raw_id)}"
    return model_key(message["project_id"], message["model_id"]), event_id


def _model_command_key(key: bytes | None, message: dict[str, Any]) -> str | tuple[str]:
    """The model a command about many of its events names, as ``(model,)``, or why it
    names none or is not keyed by it (such commands go to chosen partitions)."""
    problem = _model_problem(message)
    if problem is not None:
        return problem
    model = model_key(message["project_id"], message["model_id"])
    if key != model.encode():
        return f"a {message['op']} message must be keyed {model!r} (project_id/model_id)"
    return (model,)


def _deletion_command(
    key: bytes | None, message: dict[str, Any], offset: int, ref: int
) -> DeletionCommand | str:
    named = _model_command_key(key, message)
    if isinstance(named, str):
        return named
    (model,) = named
    deletion_id = message.get("deletion_id")
    if not isinstance(deletion_id, str) or not deletion_id:
        got = _quoted(deletion_id)
        return f"{message['op']} needs 'deletion_id', a non-empty string; got {got}"
    if message["op"] == "delete_continue":
        return ContinueDeletion(model, deletion_id, offset, ref)
    update_metrics = message.get("update_metrics", False)
    if not isinstance(update_metrics, bool):
        return f"'update_metrics' must be true or false; got {_quoted(update_metrics)}"
    if message["op"] == "delete_ids":
        ids = message.get("event_ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            return "delete_ids needs 'event_ids', a list of non-empty strings"
        return DeleteIds(model, deletion_id, tuple(ids), update_metrics, offset, ref)
    start, end = epoch_ms(message.get("start_time")), epoch_ms(message.get("end_time"))
    if start is None or end is None:
        return "delete_range needs 'start_time' and 'end_time', UTC ms since the epoch"
    if start >= end:
        return f"delete_range needs start_time < end_time; got {start} >= {end}"
    return DeleteRange(model, deletion_id, start, end, update_metrics, offset, ref)


def _rebuild_command(
    key: bytes | None, message: dict[str, Any], offset: int, ref: int
) -> RebuildBins | str:
    named = _model_command_key(key, message)
    if isinstance(named, str):
        return named
    generation = message.get("generation", 0)
    if type(generation) is not int or not 0 <= generation < 2**63:
        wanted = "rebuild_bins needs 'generation' a whole number from 0 to 2**63 - 1"
        return f"{wanted}; got {_quoted(generation)}"
    return RebuildBins(named[0], offset, ref, generation)


def _model_problem(message: dict[str, Any]) -> str | None:
    """Why the message names no model (its project_id or model_id is no name), or None."""
    return name_problem(message.get("project_id"), "project_id") or name_problem(
        message.get("model_id"), "model_id"
    )


def _quoted(value: object) -> str:
    """A value for a dead letter's reason, cut short: the message itself is kept whole."""
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."
