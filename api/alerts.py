"""``GET /v1/alerts``: a model's current and past alerts, newest bin first, in pages.

Each alert is its newest record in the compacted alerts topic (``Alert.to_dict``: value,
threshold, reference, bin, rule, severity, whether it is open, the history of its
changes), read through the process's view of the topic (``topics.alerts.Alerts``), so a
listing shows every change published before it. Filters narrow it down: ``state``
(open, resolved or all), ``rule_id``, ``bin`` (the size) and ``start``/``end`` (the
bin's start in ``[start, end)``). Tokens are scoped by project as everywhere.

A page goes on after the last alert it showed, not at an offset: alerts fire while a
client pages, and an offset would then show an alert twice or skip one.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from dataclasses import astuple, dataclass

import orjson
from aiohttp import web

from driftline.api.app import SERVICES, _check_scope, _spec, json_response
from driftline.api.requests import (
    Cursor,
    bad_request,
    model_name,
    parse_instant,
    parse_limit,
    parse_period,
    query_values,
    takes_query,
)
from driftline.state.alert_rules import InvalidAlertRuleError, checked_rule_id
from driftline.state.wording import enum_member
from driftline.topics.alerts import AlertSelection, AlertStateFilter, ListingPosition

LIST_PARAMETERS = frozenset(
    {"project_id", "model_id", "state", "rule_id", "bin", "start", "end", "limit", "cursor"}
)
DEFAULT_ALERTS = 100
MAX_ALERTS = 1000
_FOREIGN_CURSOR = (
    "'cursor' belongs to another listing: a cursor goes on with the query that gave it (the "
    "same project_id, model_id, state, rule_id, bin, start and end; only limit may change "
    "between pages). Repeat that query's parameters with it, or leave 'cursor' out to start "
    "from the first page"
)
_NOT_AN_ALERTS_CURSOR = "'cursor' is not one this listing gave; pass next_cursor as it came"


@takes_query(*LIST_PARAMETERS)
async def list_alerts(request: web.Request) -> web.Response:
    """One page of the model's alerts the query selects, and the cursor of the next."""
    services = request.app[SERVICES]
    query = parse_alert_list(request.query.items())
    selection = query.selection
    _check_scope(request, selection.project_id)
    await _spec(services, selection.project_id, selection.model_id)
    alerts, after = await asyncio.to_thread(
        services.alerts.page, selection, query.after, query.limit
    )
    body = {
        "project_id": selection.project_id,
        "model_id": selection.model_id,
        "alerts": [alert.to_dict() for alert in alerts],
        "next_cursor": None if after is None else query.cursor_after(after),
    }
    return json_response(body)


# --- the rules of a request (pure) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertListQuery:
    """``GET /v1/alerts``: the alerts selected, the page size, the position to go on after
    (None: the first page)."""

    selection: AlertSelection
    limit: int
    after: ListingPosition | None = None

    @property
    def fingerprint(self) -> str:
        """What a cursor of this query is bound to: the selection (the page size may change
        between pages; a position in another selection would skip alerts unseen)."""
        return hashlib.sha256(orjson.dumps(astuple(self.selection))).hexdigest()[:16]

    def cursor_after(self, position: ListingPosition) -> str:
        """The cursor of the page after ``position``: the API's cursor format, the position
        as hex JSON in its ``after``."""
        return Cursor(after=orjson.dumps(position).hex(), query=self.fingerprint).encode()


def parse_alert_list(items: Iterable[tuple[str, str]]) -> AlertListQuery:
    """``GET /v1/alerts``: project_id and model_id required; every filter optional."""
    query, _ = query_values(items, LIST_PARAMETERS)
    start = _optional_instant(query, "start")
    end = _optional_instant(query, "end")
    if start is not None and end is not None and start >= end:
        raise bad_request("start must be before end (alerts whose bin starts in [start, end))")
    selection = AlertSelection(
        project_id=model_name(query, "project_id"),
        model_id=model_name(query, "model_id"),
        state=_state(query.get("state", AlertStateFilter.ALL.value)),
        rule_id=_rule_id(query.get("rule_id")),
        bin=None if "bin" not in query else parse_period(query["bin"]),
        start_ms=start,
        end_ms=end,
    )
    listing = AlertListQuery(selection, parse_limit(query.get("limit"), DEFAULT_ALERTS, MAX_ALERTS))
    if not query.get("cursor"):
        return listing
    cursor = Cursor.decode(query["cursor"])
    if cursor.query != listing.fingerprint:
        raise bad_request(_FOREIGN_CURSOR)
    return AlertListQuery(selection, listing.limit, _position(cursor))


def _state(raw: str) -> AlertStateFilter:
    try:
        return enum_member(AlertStateFilter, raw, "'state'", ValueError)
    except ValueError as error:
        raise bad_request(str(error)) from None


def _rule_id(raw: str | None) -> str | None:
    """The rule filter: a rule id as rules have them (any other names no rule: a typo)."""
    try:
        return None if raw is None else checked_rule_id(raw)
    except InvalidAlertRuleError as error:
        raise bad_request(str(error)) from None


def _optional_instant(query: dict[str, str], name: str) -> int | None:
    return None if name not in query else parse_instant(query[name], name)


def _position(cursor: Cursor) -> ListingPosition:
    """The position a cursor of this listing carries (its fingerprint matched already)."""
    try:
        hour, rule_id, column, key = orjson.loads(bytes.fromhex(cursor.after))
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise bad_request(_NOT_AN_ALERTS_CURSOR) from None
    if not isinstance(hour, int) or not all(isinstance(s, str) for s in (rule_id, column, key)):
        raise bad_request(_NOT_AN_ALERTS_CURSOR)
    return hour, rule_id, column, key
