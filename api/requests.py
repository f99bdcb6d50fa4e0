"""What the API accepts: pure checks of request bodies and query strings.

Every check raises ``RequestError`` with the HTTP status and a sentence that says what
to change; nothing here does I/O, so each rule of SPEC §2 is a unit test.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from driftline.state import instants
from driftline.state.commands import event_id_of
from driftline.state.events import dropped_insert_fields, dropped_update_fields
from driftline.state.instants import epoch_ms_problem
from driftline.state.names import name_problem
from driftline.state.periods import Period
from driftline.state.spec import ModelSpec
from driftline.state.tabular import InvalidEventError, OutgoingEvent, outgoing_event
from driftline.state.wording import shown
from driftline.topics.messages import encode_ingest, ingest_key

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


def named(name: str, limit: int = 60) -> str:
    """A field or parameter name in a message: quoted, cut short (names come from users)."""
    return f"'{name}'" if len(name) <= limit else f"'{name[: limit - 3]}...'"


def model_name(body: Mapping[str, Any], field: str) -> str:
    """The body's ``field`` (project_id or model_id), a 400 unless it is a name."""
    value = body.get(field)
    problem = name_problem(value, field)
    if problem is not None:
        raise bad_request(problem)
    return str(value)


def model_named_in(body: object) -> tuple[str, str] | None:
    """The (project_id, model_id) a body names, if it names one: for the rate-limit headers."""
    if not isinstance(body, Mapping):
        return None
    try:
        return model_name(body, "project_id"), model_name(body, "model_id")
    except RequestError:
        return None


# A name's value as JSON (``"project_id": "shop"``), JSON-like text (``'project_id': 'shop'``)
# or a form field (``project_id=shop``).
_NAMED_VALUE = {
    field: re.compile(rf"""(?<![\w-])["']?{field}["']?\s*[:=]\s*["']?([^"'/\\&,}}\s]+)""")
    for field in ("project_id", "model_id")
}


def model_named_anywhere(raw: bytes, query: Mapping[str, str]) -> tuple[str, str] | None:
    """The model a request is about, read as leniently as possible: from its JSON body, from
    text that only looks like JSON or a form, or from its query string.

    Only for the rate-limit headers of a request that is refused before its body is read
    as JSON (401, 415, a body that is not JSON): they must describe that model's window,
    not an untouched one.
    """
    try:
        # Valid JSON says exactly what it names (a name with '/' names no model).
        return model_named_in(orjson.loads(raw)) or model_named_in(query)
    except orjson.JSONDecodeError:
        pass
    text = raw[:65_536].decode("utf-8", errors="replace")
    matches = {field: pattern.search(text) for field, pattern in _NAMED_VALUE.items()}
    if matches["project_id"] and matches["model_id"]:
        return matches["project_id"].group(1), matches["model_id"].group(1)
    return model_named_in(query)


# --- query strings and content types ------------------------------------------------------


_Handler = TypeVar("_Handler", bound=Callable[..., Any])
# The query parameters each route handler takes (``takes_query``): (names, names that
# may repeat). A handler not listed takes none.
_QUERY_PARAMETERS: dict[Callable[..., Any], tuple[frozenset[str], frozenset[str]]] = {}


def takes_query(*names: str, repeatable: Collection[str] = ()) -> Callable[[_Handler], _Handler]:
    """Declare the query parameters a route handler takes; the API refuses every other
    name with a 400 (``api.app._query`` applies ``query_values`` to every route)."""

    def declare(handler: _Handler) -> _Handler:
        _QUERY_PARAMETERS[handler] = (frozenset(names), frozenset(repeatable))
        return handler

    return declare


def query_parameters_of(handler: Callable[..., Any]) -> tuple[frozenset[str], frozenset[str]]:
    """(names, repeatable names) a handler declared with ``takes_query``; none if it did not."""
    return _QUERY_PARAMETERS.get(handler, (frozenset(), frozenset()))


def query_values(
    items: Iterable[tuple[str, str]], known: Collection[str], repeatable: Collection[str] = ()
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(single values, repeated values) of a query string, by name.

    One rule for every route: a name the route does not take is a 400 naming it (a typo
    such as ``strat=`` must not silently widen a read or a delete), and so is a name
    given twice that the route takes once.
    """
    items = list(items)
    refuse_unknown((name for name, _ in items), known, noun="query parameter")
    single: dict[str, str] = {}
    repeated: dict[str, list[str]] = {name: [] for name in repeatable}
    for name, value in items:
        if name in repeated:
            repeated[name].append(value)
        elif name in single:
            raise bad_request(f"query parameter {named(name)} is given twice; give it once")
        else:
            single[name] = value
    return single, repeated


def content_type_problem(header: str | None) -> str | None:
    """Why a body with this Content-Type is not taken as JSON, or None if it is.

    ``application/json`` with or without ``charset=utf-8`` (JSON is UTF-8). No Content-Type
    at all is taken as JSON: the body is parsed, and a body that is not JSON is a 400 that
    says so; a client that names another type is told to name JSON (415).
    """
    if header is None:
        return None
    media_type, _, parameters = header.partition(";")
    if media_type.strip().lower() != "application/json":
        return (
            f"this route takes a JSON body: send 'Content-Type: application/json' "
            f"(got {shown(header.strip())}); with curl, -H 'Content-Type: application/json'"
        )
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return f"a JSON body is UTF-8; got charset {shown(value.strip())}: send it as UTF-8"
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
    listed = ", ".join(named(name) for name in unknown[:20])
    if len(unknown) > 20:
        listed += f" and {len(unknown) - 20} more"
    return f"{subject} {noun}(s) {listed}; the {noun}s are {', '.join(sorted(allowed))}"


def refuse_unknown(
    given: Iterable[str], known: Iterable[str], where: str = "", noun: str = "field"
) -> None:
    problem = _unknown_names(given, known, where, noun)
    if problem is not None:
        raise bad_request(problem)


def parse_delete(body: object) -> DeleteRequest:
    if not isinstance(body, Mapping):
        raise bad_request("the body must be a JSON object")
    refuse_unknown(body, _DELETE_FIELDS)
    project_id, model_id = model_name(body, "project_id"), model_name(body, "model_id")
    environment = body.get("environment", "production")
    if environment != "production":
        if isinstance(environment, str) and environment.lower() in _BASELINE_NAMES:
            raise bad_request(
                "baselines cannot be edited row by row: only production events can be "
                "deleted; register the model again with a new baseline instead"
            )
        raise bad_request(f"'environment' must be 'production'; got {shown(environment)}")
    has_ids, has_range = body.get("event_ids") is not None, body.get("time_range") is not None
    if has_ids and has_range:
        raise bad_request(
            "give either 'event_ids' or 'time_range', not both: one call deletes by ids or "
            "by time range; send two requests"
        )
    if not has_ids and not has_range:
        raise bad_request(
            "give 'event_ids' (a list of up to 10,000 ids) or 'time_range' "
            f'({{"start_time": "{HOUR_FORMAT}", "end_time": ...}}): nothing says what to delete'
        )
    update_metrics = body.get("update_metrics", False)
    if not isinstance(update_metrics, bool):
        raise bad_request(f"'update_metrics' must be true or false; got {shown(update_metrics)}")
    if has_ids:
        ids = parse_event_ids(body["event_ids"], "event_ids")
        return DeleteRequest(project_id, model_id, ids, None, update_metrics)
    return DeleteRequest(
        project_id, model_id, None, parse_time_range(body["time_range"]), update_metrics
    )


def parse_event_ids(raw: object, field: str) -> tuple[str, ...]:
    """Non-empty strings (integers as their decimal form), duplicates once, at most 10,000."""
    if not isinstance(raw, list) or not raw:
        raise bad_request(f"'{field}' must be a non-empty list of event ids; got {shown(raw)}")
    if len(raw) > MAX_DELETE_IDS:
        raise bad_request(
            f"'{field}' has {len(raw):,} ids; at most {MAX_DELETE_IDS:,} per request: split "
            "them over several requests, or delete by time range"
        )
    ids: dict[str, None] = {}
    for index, value in enumerate(raw):
        event_id = event_id_of(value)
        if event_id is None:
            raise bad_request(
                f"{field}[{index}] must be a non-empty string (or an integer); got {shown(value)}"
            )
        ids[event_id] = None
    return tuple(ids)


def parse_time_range(raw: object) -> tuple[int, int]:
    """A delete's ``{start_time, end_time}``: the times every route takes, on the hour."""
    if not isinstance(raw, Mapping):
        raise bad_request(
            f'\'time_range\' must be an object {{"start_time": "{HOUR_FORMAT}", "end_time": '
            f'"{HOUR_FORMAT}"}} (or UTC milliseconds, or ISO 8601 with a zone, on the hour); '
            f"got {shown(raw)}"
        )
    refuse_unknown(raw, {"start_time", "end_time"}, where="'time_range'")
    start = parse_hour(raw.get("start_time"), "time_range.start_time")
    end = parse_hour(raw.get("end_time"), "time_range.end_time")
    if start >= end:
        raise bad_request(
            "time_range.start_time must be before time_range.end_time (start_time <= t < "
            f"end_time); got {shown(raw['start_time'])} and {shown(raw['end_time'])}"
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
    refuse_unknown(body, {"project_id", "model_id", "events"})
    project_id, model_id = model_name(body, "project_id"), model_name(body, "model_id")
    rows = body.get("events")
    if not isinstance(rows, list) or not rows:
        raise bad_request(
            "'events' must be a non-empty list of objects with 'event' (and optionally "
            f"'event_id' and 'event_timestamp'); got {shown(rows)}"
        )
    return PublishBatch(project_id, model_id, rows)


def check_row(spec: ModelSpec, row: object, index: int, update: bool) -> OutgoingEvent:
    """One row of a publish request as the message to send; InvalidEventError if not."""
    where = f"events[{index}]"
    if not isinstance(row, Mapping):
        raise InvalidEventError(f"{where} must be an object with 'event'; got {shown(row)}")
    problem = _unknown_names(row, _ROW_FIELDS, where=where)
    if problem is not None:
        raise InvalidEventError(problem)
    event = row.get("event")
    if not isinstance(event, Mapping):
        raise InvalidEventError(
            f"{where}.event must be an object of column values; got {shown(event)}"
        )
    timestamp = row.get("event_timestamp")
    problem = None if timestamp is None else epoch_ms_problem(timestamp, f"{where}.event_timestamp")
    if problem is not None:
        raise InvalidEventError(problem)
    event_id = row.get("event_id")
    if update and event_id is None and spec.event_id_col not in event:
        raise InvalidEventError(f"{where}: an update needs 'event_id' to find the event")
    return outgoing_event(
        spec, event, update=update, event_id=event_id, event_timestamp=timestamp, where=where
    )


def publish_messages(
    spec: ModelSpec, rows: list[Any], update: bool, max_bytes: int
) -> tuple[list[tuple[bytes, bytes, int]], list[str], list[dict[str, Any]], Counter[str]]:
    """(messages, their event ids, errors by row index, dropped fields by name)."""
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
        # What the worker will drop, counted per field name: an update's read-only or unknown
        # columns, an insert's columns the spec does not list.
        drops = dropped_update_fields if update else dropped_insert_fields
        dropped.update(drops(spec, outgoing.columns))
        key = ingest_key(spec.project_id, spec.model_id, outgoing.event_id)
        messages.append((key, value, -1))
        event_ids.append(outgoing.event_id)
    return messages, event_ids, errors, dropped


def publish_answer(
    event_ids: list[str], errors: list[dict[str, Any]], dropped: Counter[str]
) -> tuple[dict[str, Any], int]:
    """The body and status of a publish: 200 when every row was accepted, 207 when some
    were refused, 400 when every row was (nothing was sent: the request as a whole failed).

    ``dropped_fields`` counts, per field name, the values the worker will drop: columns
    the spec does not list, and an update's inputs, outputs and decisions.
    """
    body: dict[str, Any] = {
        "accepted": len(event_ids),
        "errors": errors,
        "event_ids": event_ids,
        "dropped_fields": dict(dropped.most_common()),
    }
    if errors and not event_ids:
        refused = "the row was" if len(errors) == 1 else f"all {len(errors):,} rows were"
        error = f"nothing was published: {refused} refused; 'errors' says why, row by row"
        return {"error": error, **body}, 400
    return body, 207 if errors else 200


# --- slices ------------------------------------------------------------------------------

SLICE_PARAMETERS = frozenset(
    {"project_id", "model_id", "start_time", "end_time", "event_id", "format", "limit", "cursor"}
)
METRICS_PARAMETERS = frozenset({"project_id", "model_id", "start", "end", "bin"})
_FOREIGN_CURSOR = (
    "'cursor' belongs to another query: a cursor goes on with the query that gave it (the "
    "same project_id, model_id, start_time, end_time and event_id values; only limit and "
    "format may change between pages). Repeat that query's parameters with it, or leave "
    "'cursor' out to start from the first page"
)
_NOT_A_CURSOR = "'cursor' is not one this API gave; pass next_cursor as it came"


@dataclass(frozen=True, slots=True)
class SliceQuery:
    project_id: str
    model_id: str
    time_range: tuple[int, int] | None
    event_ids: tuple[str, ...] | None
    format: str
    limit: int
    cursor: Cursor

    @property
    def fingerprint(self) -> str:
        """What a cursor of this query is bound to: the model and the events it selects.

        A cursor is a position in one ordering of one selection (partition and key for a
        time range, an index into the ordered ids); applied to another selection it would
        skip or repeat events without a word. Page size and format do not move positions,
        so they may change from page to page.
        """
        selection = [self.project_id, self.model_id, self.time_range, self.event_ids]
        return hashlib.sha256(orjson.dumps(selection)).hexdigest()[:16]

    def cursor_at(self, partition: int = 0, after: str = "", offset: int = 0) -> Cursor:
        """A cursor for the next page of this query."""
        return Cursor(partition, after, offset, self.fingerprint)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a slice goes on: a partition and the worker's key after which to read, or (by
    ids) how many of the ordered ids are done; ``query`` is the fingerprint of the query
    it belongs to (empty: the first page)."""

    partition: int = 0
    after: str = ""
    offset: int = 0
    query: str = ""

    def encode(self) -> str:
        raw = orjson.dumps({"p": self.partition, "a": self.after, "o": self.offset,
                            "q": self.query})  # fmt: skip
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            cursor = cls(int(raw["p"]), str(raw["a"]), int(raw["o"]), str(raw["q"]))
            bytes.fromhex(cursor.after)
        except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise bad_request(_NOT_A_CURSOR) from None
        if cursor.partition < 0 or cursor.offset < 0 or not cursor.query:
            raise bad_request(_NOT_A_CURSOR)
        return cursor


def parse_slice(items: Iterable[tuple[str, str]]) -> SliceQuery:
    """``GET /v1/events`` query: a model, a time range and/or ids, format, page size."""
    single, repeated = query_values(items, SLICE_PARAMETERS, repeatable={"event_id"})
    project_id, model_id = model_name(single, "project_id"), model_name(single, "model_id")
    time_range = None
    if "start_time" in single or "end_time" in single:
        start = parse_instant(single.get("start_time"), "start_time")
        end = parse_instant(single.get("end_time"), "end_time")
        if start >= end:
            raise bad_request("start_time must be before end_time (start_time <= t < end_time)")
        time_range = (start, end)
    ids = repeated["event_id"]
    event_ids = parse_event_ids(ids, "event_id") if ids else None
    if time_range is None and event_ids is None:
        raise bad_request("give start_time and end_time, or event_id (repeatable), or both")
    fmt = single.get("format", "json")
    if fmt not in ("json", "csv"):
        raise bad_request(f"'format' must be json or csv; got {shown(fmt)}")
    limit = parse_limit(single.get("limit"), DEFAULT_SLICE_LIMIT, MAX_SLICE_LIMIT)
    query = SliceQuery(project_id, model_id, time_range, event_ids, fmt, limit, Cursor())
    if not single.get("cursor"):
        return query
    cursor = Cursor.decode(single["cursor"])
    if cursor.query != query.fingerprint:
        raise bad_request(_FOREIGN_CURSOR)
    return SliceQuery(project_id, model_id, time_range, event_ids, fmt, limit, cursor)


@dataclass(frozen=True, slots=True)
class MetricsQuery:
    """``GET /v1/metrics``: the model, the range ``[start, end)`` in UTC ms, the bin size."""

    project_id: str
    model_id: str
    start: int
    end: int
    period: Period = Period.HOUR


def parse_metrics(items: Iterable[tuple[str, str]]) -> MetricsQuery:
    """``GET /v1/metrics``: start and end in any form of ``state.instants``; ``bin`` one of
    the periods (hour when left out, the bins this route always served)."""
    query, _ = query_values(items, METRICS_PARAMETERS)
    project_id, model_id = model_name(query, "project_id"), model_name(query, "model_id")
    start = parse_instant(query.get("start"), "start")
    end = parse_instant(query.get("end"), "end")
    if start >= end:
        raise bad_request("start must be before end")
    return MetricsQuery(project_id, model_id, start, end, parse_period(query.get("bin")))


def parse_period(raw: str | None) -> Period:
    """A bin size by its name; hour when not given."""
    if raw is None:
        return Period.HOUR
    try:
        return Period(raw)
    except ValueError:
        allowed = ", ".join(period.value for period in Period)
        raise bad_request(f"'bin' must be one of {allowed}; got {shown(raw)}") from None


def parse_instant(raw: str | None, name: str) -> int:
    """UTC ms, ISO 8601 with a zone, or ``YYYY-MM-DD HH:MM:SS`` as UTC; 400 otherwise."""
    try:
        return instants.parse_instant(raw, name)
    except ValueError as error:
        raise bad_request(str(error)) from None


def parse_limit(raw: str | None, default: int, maximum: int) -> int:
    """A page size, ``limit``: 1 to ``maximum``, ``default`` when not given."""
    if raw is None or raw == "":
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise bad_request(f"'limit' must be an integer; got {shown(raw)}") from None
    if not 1 <= limit <= maximum:
        raise bad_request(f"'limit' must be between 1 and {maximum:,}; got {limit}")
    return limit


def ordered_ids(ids: Sequence[str], partition_of: Any) -> list[tuple[int, str]]:
    """Ids in (partition, request order): how an id slice is paged."""
    return sorted(((partition_of(event_id), event_id) for event_id in ids), key=lambda p: p[0])
