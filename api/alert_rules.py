"""Alert rules over REST: ``/v1/alert-rules``, create, replace, list, read and delete.

A rule is checked against its model's spec by ``state.alert_rules.AlertRule.from_dict``
(its message is the 400's), then kept in the compacted topic of ``topics.alert_rules``.
Creating is idempotent: the identical rule again is 200, a different rule under the same
id is 409 (``PUT`` replaces deliberately). Tokens are scoped by project as everywhere.

Secrets never leave the API: every answer shows a channel's ``secret`` (webhook) and
``routing_key`` (PagerDuty) as ``"***"``. So a rule read back cannot be sent back as it
is: a ``PUT`` carries the channels' secrets again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from aiohttp import web

from driftline.api.app import (
    SERVICES,
    Services,
    _check_scope,
    _json_body,
    _spec,
    json_response,
)
from driftline.api.requests import (
    RequestError,
    bad_request,
    model_name,
    query_values,
    takes_query,
)
from driftline.state.alert_rules import AlertRule, InvalidAlertRuleError, rule_key
from driftline.state.spec import ModelSpec
from driftline.state.wording import shown
from driftline.topics.alert_rules import (
    AlertRuleConflictError,
    create_rule,
    publish_rule,
    withdraw_rule,
)
from driftline.topics.producer import DeliveryError

LIST_PARAMETERS = frozenset({"project_id", "model_id"})
# A channel's fields that are credentials: shown masked in every answer.
SECRET_FIELDS = ("secret", "routing_key")
MASK = "***"
_PATH_FIELDS = ("project_id", "model_id", "rule_id")


# --- handlers ----------------------------------------------------------------------------


async def post_rule(request: web.Request) -> web.Response:
    """Create a rule: 201 with its Location, 200 if the identical rule exists, 409 if
    another rule holds its id."""
    services = request.app[SERVICES]
    body = await _json_body(request)
    project_id, model_id = rule_model(body)
    _check_scope(request, project_id)
    rule = parse_rule(body, await _spec(services, project_id, model_id))
    try:
        # Under the produce lock: two creates of one id through this process are checked
        # and published one after the other, so the second sees the first.
        async with services.produce_lock:
            created = await asyncio.to_thread(
                create_rule, services.producer, _topic(services), services.alert_rules, rule
            )
    except AlertRuleConflictError as error:
        raise RequestError(409, str(error)) from None
    except DeliveryError as error:
        raise _not_accepted(error) from None
    headers = {"Location": rule_path(rule.project_id, rule.model_id, rule.rule_id)}
    return json_response(masked(rule.to_dict()), 201 if created else 200, headers)


async def put_rule(request: web.Request) -> web.Response:
    """Replace an existing rule with the body (the path names it; 404 if it does not exist)."""
    services = request.app[SERVICES]
    project_id, model_id, rule_id = _path_names(request)
    _check_scope(request, project_id)
    body = body_at_path(await _json_body(request), project_id, model_id, rule_id)
    rule = parse_rule(body, await _spec(services, project_id, model_id))
    await _existing(services, rule.key)
    try:
        async with services.produce_lock:
            await asyncio.to_thread(publish_rule, services.producer, _topic(services), rule)
    except DeliveryError as error:
        raise _not_accepted(error) from None
    return json_response(masked(rule.to_dict()))


@takes_query(*LIST_PARAMETERS)
async def list_rules(request: web.Request) -> web.Response:
    """The model's rules, by rule id."""
    services = request.app[SERVICES]
    project_id, model_id = parse_rule_list(request.query.items())
    _check_scope(request, project_id)
    await _spec(services, project_id, model_id)
    records = await asyncio.to_thread(services.alert_rules.of_model, project_id, model_id)
    rules = [masked(record) for record in records]
    return json_response({"project_id": project_id, "model_id": model_id, "rules": rules})


async def get_rule(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    project_id, model_id, rule_id = _path_names(request)
    _check_scope(request, project_id)
    await _spec(services, project_id, model_id)
    return json_response(masked(await _existing(services, rule_key(project_id, model_id, rule_id))))


async def delete_rule(request: web.Request) -> web.Response:
    """Delete a rule: 204; 404 if there is none (a repeated delete is told it is done)."""
    services = request.app[SERVICES]
    project_id, model_id, rule_id = _path_names(request)
    _check_scope(request, project_id)
    await _spec(services, project_id, model_id)
    key = rule_key(project_id, model_id, rule_id)
    await _existing(services, key)
    try:
        async with services.produce_lock:
            await asyncio.to_thread(withdraw_rule, services.producer, _topic(services), key)
    except DeliveryError as error:
        raise _not_accepted(error) from None
    return web.Response(status=204)


# --- the rules of a request (pure) ----------------------------------------------------------


def rule_model(body: object) -> tuple[str, str]:
    """The (project_id, model_id) a rule body names: needed before the rule can be checked
    (its model's spec), and to check the token's scope first."""
    if not isinstance(body, Mapping):
        raise bad_request("the body must be a JSON object: an alert rule")
    return model_name(body, "project_id"), model_name(body, "model_id")


def body_at_path(body: object, project_id: str, model_id: str, rule_id: str) -> dict[str, Any]:
    """A ``PUT`` body with the names of its path: a name it leaves out is the path's, a
    name it gives differently is a 400 (the path says which rule is replaced)."""
    if not isinstance(body, Mapping):
        raise bad_request("the body must be a JSON object: an alert rule")
    named = dict(zip(_PATH_FIELDS, (project_id, model_id, rule_id), strict=True))
    for field, value in named.items():
        if field in body and body[field] != value:
            raise bad_request(
                f"the body's {field} {shown(body[field])} is not the path's {shown(value)}; "
                f"a rule's names cannot change: create a new rule, delete this one"
            )
    return {**body, **named}


def parse_rule(body: Any, spec: ModelSpec) -> AlertRule:
    """The rule, or a 400 with the rule model's message."""
    try:
        return AlertRule.from_dict(body, spec)
    except InvalidAlertRuleError as error:
        raise bad_request(str(error)) from None


def parse_rule_list(items: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """``GET /v1/alert-rules``: project_id and model_id, both required."""
    query, _ = query_values(items, LIST_PARAMETERS)
    return model_name(query, "project_id"), model_name(query, "model_id")


def masked(record: Mapping[str, Any]) -> dict[str, Any]:
    """A rule record as answers show it: every channel credential replaced by ``***``."""
    channels = [
        {name: MASK if name in SECRET_FIELDS else value for name, value in channel.items()}
        for channel in record.get("channels") or ()
    ]
    return {**record, "channels": channels}


def rule_path(project_id: str, model_id: str, rule_id: str) -> str:
    """The rule's URL path, each name percent-encoded."""
    names = "/".join(quote(name, safe="") for name in (project_id, model_id, rule_id))
    return f"/v1/alert-rules/{names}"


# --- helpers -----------------------------------------------------------------------------


def _path_names(request: web.Request) -> tuple[str, str, str]:
    info = request.match_info
    return info["project_id"], info["model_id"], info["rule_id"]


async def _existing(services: Services, key: str) -> dict[str, Any]:
    record = await asyncio.to_thread(services.alert_rules.get, key)
    if record is None:
        raise RequestError(404, f"no alert rule {shown(key)}; create it with POST /v1/alert-rules")
    return record


def _topic(services: Services) -> str:
    return services.topics.alert_rules.name


def _not_accepted(error: DeliveryError) -> RequestError:
    return RequestError(503, f"the broker did not accept the rule ({error}); retry")
