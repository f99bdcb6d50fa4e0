"""``POST /v1/events/lookup``: the slice by ids with the ids in a JSON body.

A query string of more than ~500 ids overflows the request line (8,190 bytes); the body
carries up to 10,000. The body is turned into the query items of ``GET /v1/events`` and
checked by the same ``parse_slice``, so both forms accept, refuse and page alike.
"""

from __future__ import annotations

from collections.abc import Mapping

from driftline.api.requests import (
    SliceQuery,
    bad_request,
    parse_event_ids,
    parse_slice,
    refuse_unknown,
)
from driftline.state.wording import shown

_FIELDS = ("project_id", "model_id", "start_time", "end_time", "format", "limit", "cursor")


def parse_lookup(body: object) -> SliceQuery:
    """The slice a lookup body asks for; ``RequestError`` (400) says what to change."""
    if not isinstance(body, Mapping):
        raise bad_request(
            'the body must be a JSON object {"project_id", "model_id", "event_ids": [...]}'
        )
    refuse_unknown(body, {*_FIELDS, "event_ids"})
    if body.get("event_ids") is None:
        raise bad_request("'event_ids' is required: a list of up to 10,000 event ids")
    ids = parse_event_ids(body["event_ids"], "event_ids")
    items = [(name, _text(body[name], name)) for name in _FIELDS if body.get(name) is not None]
    return parse_slice([*items, *(("event_id", event_id) for event_id in ids)])


def _text(value: object, name: str) -> str:
    """A body value as the query string would carry it (integers as decimals)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise bad_request(f"'{name}' must be a string or an integer; got {shown(value)}")
