"""What the API accepts: pure checks of request bodies and query strings.

Every check raises ``RequestError`` with the HTTP status and a sentence that says what
to change; nothing here does I/O, so each rule of SPEC §2 is a unit test.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from state import instants
from state.events import dropped_update_fields
from state.models import ModelSpec
from topics.messages import encode_ingest, ingest_key
from topics.sources import InvalidEventError, OutgoingEvent, outgoing_event

MAX_DELETE_IDS = 10_000
DEFAULT_SLICE_LIMIT = 1_000
MAX_SLICE_LIMIT = 10_000
HOUR_FORMAT = "YYYY-MM-DD HH:00:00"

_DELETE_FIELDS = frozenset(
    {"project_id", "model_id", "event_ids", "time_range", "update_metrics", "environment"}
)
_ROW_FIELDS = frozenset({"event_id", "event_timestamp", "event"})
# Names a user may give the pre-production dataset; it is never edited row by row.
_BASELINE_NAMES = frozenset({"baseline", "pre_production", "pre-production", "preproduction"})


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> RequestError:
    return RequestError(400, message)


# --- names -----------------------------------------------------------------------------


def model_name(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value or "/" in value:
        raise bad_request(f"{field!r} must be a non-empty string without '/'; got {value!r}")
    return value


def model_of(body: object) -> tuple[str, str] | None:
    """The (project_id, model_id) a body names, if it names one: for the rate-limit headers."""
    if not isinstance(body, Mapping):
        return None
    try:
        return model_name(body, "project_id"), model_name(body, "model_id")
    except RequestError:
        return None


# --- deletion --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    project_id: str
    model_id: str
    # Exactly one of the two: ids (deduplicated, in request order) or [start_ms, end_ms).
    event_ids: tuple[str, ...] | None
    time_range: tuple[int, int] | None
    update_metrics: bool

    @property
    def kind(self) -> str:
        return "ids" if self.event_ids is not None else "range"


def _unknown_names(
    given: Iterable[str], known: Iterable[str], where: str = "", noun: str = "field"
) -> str | None:
    """The message for names a request may not carry, or None; it lists those it may."""
    allowed = set(known)
    unknown = sorted(set(given) - allowed)
    if not unknown:
        return None
    subject = f"{where} has unknown" if where else "unknown"
    return (
        f"{subject} {noun}(s) {', '.join(map(repr, unknown))}; the {noun}s are "
        f"{', '.join(sorted(allowed))}"
    )


def _refuse_unknown(
    given: Iterable[str], known: Iterable[str], where: str = "", noun: str = "field"
) -> None:
    problem = _unknown_names(given, known, where, noun)
    if problem is not None:
        raise bad_request(problem)


def parse_delete(body: object) -> DeleteRequest:
    if not isinstance(body, Mapping):
        raise bad_request("the body must be a JSON object")
    _refuse_unknown(body, _DELETE_FIELDS)
    project_id, model_id = model_name(body, "project_id"), model_name(body, "model_id")
    environment = body.get("environment", "production")
    if environment != "production":
        if isinstance(environment, str) and environment.lower() in _BASELINE_NAMES:
            raise bad_request(
                "baselines cannot be edited row by row: only production events can be "
                "deleted; register the model again with a new baseline instead"
            )
        raise bad_request(f"'environment' must be 'production'; got {environment!r}")
    has_ids, has_range = body.get("event_ids") is not None, body.get("time_range") is not None
    if has_ids and has_range:
        raise bad_request(
            "give either 'event_ids' or 'time_range', not both: one call deletes by ids or "
            "by time range; send two requests"
        )
    if not has_ids and not has_range:
        raise bad_request(
            "give 'event_ids' (a list of up to 10,000 ids) or 'time_range' "
            f"({{'start_time': '{HOUR_FORMAT}', 'end_time': ...}}): nothing says what to delete"
        )
    update_metrics = body.get("update_metrics", False)
    if not isinstance(update_metrics, bool):
        raise bad_request(f"'update_metrics' must be true or false; got {update_metrics!r}")
    if has_ids:
        ids = parse_event_ids(body["event_ids"], "event_ids")
        return DeleteRequest(project_id, model_id, ids, None, update_metrics)
    return DeleteRequest(
        project_id, model_id, None, parse_time_range(body["time_range"]), update_metrics
    )


def parse_event_ids(raw: object, field: str) -> tuple[str, ...]:
    """Non-empty strings (integers as their decimal form), duplicates once, at most 10,000."""
    if not isinstance(raw, list) or not raw:
        raise bad_request(f"{field!r} must be a non-empty list of event ids; got {_short(raw)}")
    if len(raw) > MAX_DELETE_IDS:
        raise bad_request(
            f"{field!r} has {len(raw):,} ids; at most {MAX_DELETE_IDS:,} per request: split "
            "them over several requests, or delete by time range"
        )
    ids: dict[str, None] = {}
    for index, value in enumerate(raw):
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            raise bad_request(
                f"{field}[{index}] must be a non-empty string (or an integer); got {value!r}"
            )
        ids[value] = None
    return tuple(ids)


def parse_time_range(raw: object) -> tuple[int, int]:
    """A delete's ``{start_time, end_time}``: the times every route takes, on the hour."""
    if not isinstance(raw, Mapping):
        raise bad_request(
            f"'time_range' must be an object {{'start_time': '{HOUR_FORMAT}', 'end_time': "
            f"'{HOUR_FORMAT}'}} (or UTC milliseconds, or ISO 8601 with a zone, on the hour); "
            f"got {_short(raw)}"
        )
    _refuse_unknown(raw, {"start_time", "end_time"}, where="'time_range'")
    start = parse_hour(raw.get("start_time"), "time_range.start_time")
    end = parse_hour(raw.get("end_time"), "time_range.end_time")
    if start >= end:
        raise bad_request(
            "time_range.start_time must be before time_range.end_time (start_time <= t < "
            f"end_time); got {raw['start_time']} and {raw['end_time']}"
        )
    return start, end


def parse_hour(value: object, field: str) -> int:
    """A UTC hour in any of the forms ``state.instants`` reads, in ms since the epoch."""
    try:
        return instants.parse_hour(value, field)
    except ValueError as error:
        raise bad_request(str(error)) from None


# --- publishing over HTTP ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishBatch:
    project_id: str
    model_id: str
    rows: list[Any]


def parse_publish(body: object) -> PublishBatch:
    if not isinstance(body, Mapping):
        raise bad_request("the body must be a JSON object")
    _refuse_unknown(body, {"project_id", "model_id", "events"})
    project_id, model_id = model_name(body, "project_id"), model_name(body, "model_id")
    rows = body.get("events")
    if not isinstance(rows, list) or not rows:
        raise bad_request(
            "'events' must be a non-empty list of {'event_id', 'event_timestamp', 'event'} "
            f"objects; got {_short(rows)}"
        )
    return PublishBatch(project_id, model_id, rows)


def check_row(spec: ModelSpec, row: object, index: int, update: bool) -> OutgoingEvent:
    """One row of a publish request as the message to send; InvalidEventError if not."""
    where = f"events[{index}]"
    if not isinstance(row, Mapping):
        raise InvalidEventError(f"{where} must be an object with 'event'; got {_short(row)}")
    problem = _unknown_names(row, _ROW_FIELDS, where=where)
    if problem is not None:
        raise InvalidEventError(problem)
    event = row.get("event")
    if not isinstance(event, Mapping):
        raise InvalidEventError(
            f"{where}.event must be an object of column values; got {_short(event)}"
        )
    timestamp = row.get("event_timestamp")
    if timestamp is not None and (
        isinstance(timestamp, bool) or not isinstance(timestamp, int) or timestamp < 0
    ):
        raise InvalidEventError(
            f"{where}.event_timestamp must be UTC milliseconds since the epoch (a "
            f"non-negative integer); got {timestamp!r}"
        )
    event_id = row.get("event_id")
    if update and event_id is None and spec.event_id_col not in event:
        raise InvalidEventError(f"{where}: an update needs 'event_id' to find the event")
    return outgoing_event(
        spec, event, update=update, event_id=event_id, event_timestamp=timestamp, where=where
    )


def publish_messages(
    spec: ModelSpec, rows: list[Any], update: bool, max_bytes: int
) -> tuple[list[tuple[bytes, bytes, int]], list[str], list[dict[str, Any]], Counter[str]]:
    """(messages, their event ids, errors by row index, dropped update fields)."""
    op = "update" if update else "insert"
    messages: list[tuple[bytes, bytes, int]] = []
    event_ids: list[str] = []
    errors: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    for index, row in enumerate(rows):
        try:
            outgoing = check_row(spec, row, index, update)
        except InvalidEventError as error:
            errors.append({"index": index, "error": str(error)})
            continue
        value = encode_ingest(
            op, spec.project_id, spec.model_id, outgoing.event_id, outgoing.columns,
            outgoing.timestamp_ms,
        )  # fmt: skip
        if len(value) > max_bytes:
            errors.append({"index": index, "error": f"events[{index}] is {len(value):,} bytes "
                           f"as a message; the limit is {max_bytes:,}"})  # fmt: skip
            continue
        if update:
            dropped.update(dropped_update_fields(spec, outgoing.columns))
        key = ingest_key(spec.project_id, spec.model_id, outgoing.event_id)
        messages.append((key, value, -1))
        event_ids.append(outgoing.event_id)
    return messages, event_ids, errors, dropped


# --- slices ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SliceQuery:
    project_id: str
    model_id: str
    time_range: tuple[int, int] | None
    event_ids: tuple[str, ...] | None
    format: str
    limit: int
    cursor: Cursor


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a slice goes on: a partition and the worker's key after which to read, or (by
    ids) how many of the ordered ids are done."""

    partition: int = 0
    after: str = ""
    offset: int = 0

    def encode(self) -> str:
        raw = orjson.dumps({"p": self.partition, "a": self.after, "o": self.offset})
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            cursor = cls(int(raw["p"]), str(raw["a"]), int(raw["o"]))
            bytes.fromhex(cursor.after)
        except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise bad_request(
                "'cursor' is not one this API gave; pass next_cursor as it came"
            ) from None
        if cursor.partition < 0 or cursor.offset < 0:
            raise bad_request("'cursor' is not one this API gave; pass next_cursor as it came")
        return cursor


def parse_slice(items: Iterable[tuple[str, str]]) -> SliceQuery:
    """``GET /v1/events`` query: a model, a time range and/or ids, format, page size."""
    single: dict[str, str] = {}
    ids: list[str] = []
    for name, value in items:
        if name == "event_id":
            ids.append(value)
        elif name in single:
            raise bad_request(f"query parameter {name!r} is given twice")
        else:
            single[name] = value
    known = {"project_id", "model_id", "start_time", "end_time", "format", "limit", "cursor"}
    _refuse_unknown(single, known | {"event_id"}, noun="query parameter")
    project_id, model_id = model_name(single, "project_id"), model_name(single, "model_id")
    time_range = None
    if "start_time" in single or "end_time" in single:
        start = parse_instant(single.get("start_time"), "start_time")
        end = parse_instant(single.get("end_time"), "end_time")
        if start >= end:
            raise bad_request("start_time must be before end_time (start_time <= t < end_time)")
        time_range = (start, end)
    event_ids = parse_event_ids(ids, "event_id") if ids else None
    if time_range is None and event_ids is None:
        raise bad_request("give start_time and end_time, or event_id (repeatable), or both")
    fmt = single.get("format", "json")
    if fmt not in ("json", "csv"):
        raise bad_request(f"'format' must be json or csv; got {fmt!r}")
    limit = _int_param(single.get("limit"), "limit", DEFAULT_SLICE_LIMIT)
    if not 1 <= limit <= MAX_SLICE_LIMIT:
        raise bad_request(f"'limit' must be between 1 and {MAX_SLICE_LIMIT:,}; got {limit}")
    cursor = Cursor.decode(single["cursor"]) if single.get("cursor") else Cursor()
    return SliceQuery(project_id, model_id, time_range, event_ids, fmt, limit, cursor)


def parse_metrics(query: Mapping[str, str]) -> tuple[str, str, int, int]:
    """``GET /v1/metrics``: project_id, model_id, start, end (any form of ``state.instants``)."""
    project_id, model_id = model_name(query, "project_id"), model_name(query, "model_id")
    start = parse_instant(query.get("start"), "start")
    end = parse_instant(query.get("end"), "end")
    if start >= end:
        raise bad_request("start must be before end")
    return project_id, model_id, start, end


def parse_instant(raw: str | None, name: str) -> int:
    """UTC ms, ISO 8601 with a zone, or ``YYYY-MM-DD HH:MM:SS`` as UTC; 400 otherwise."""
    try:
        return instants.parse_instant(raw, name)
    except ValueError as error:
        raise bad_request(str(error)) from None


def _int_param(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"{name!r} must be an integer; got {raw!r}") from None


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def ordered_ids(ids: Sequence[str], partition_of: Any) -> list[tuple[int, str]]:
    """Ids in (partition, request order): how an id slice is paged."""
    return sorted(((partition_of(event_id), event_id) for event_id in ids), key=lambda p: p[0])
