"""The API's aiohttp application: routes, auth, and the wiring to Kafka, Redis and workers.

``create_app(settings, internal_secret)`` builds a fresh application from the
application's settings, passed in (tests build one per test with their own topics).
Handlers stay thin: the checks are in ``api.requests``, the shaping of answers in
``api.responses``, the messages of a deletion in ``api.deletions``.

Routes (the OpenAPI document ``api/openapi.yaml`` describes each):

- ``POST /v1/events/delete`` and ``DELETE /v1/events``: delete by ids or time range
- ``GET /v1/deletions/{deletion_id}``: a deletion's progress
- ``GET /v1/events``: slices by time range and/or ids, JSON or CSV
- ``POST /v1/events/lookup``: the slice by ids, the ids (up to 10,000) in a JSON body
- ``POST /v1/events`` / ``PATCH /v1/events``: insert / update events in batches
- ``GET /v1/metrics``: hourly bins, or day and week bins summed from them
- ``POST /v1/models``, ``GET /v1/models/{project_id}/{model_id}``: registration (``api.models``)
- ``POST /v1/alert-rules``, ``GET /v1/alert-rules`` and ``PUT``, ``GET``, ``DELETE
  /v1/alert-rules/{project_id}/{model_id}/{rule_id}``: alert rules (``api.alert_rules``)
- ``GET /v1/alerts``: a model's current and past alerts (``api.alerts``)
- ``GET /v1/events/{project_id}/{model_id}/{event_id}``, ``GET /v1/models/{project_id}/
  {model_id}/counters`` and ``/dead-letters``, ``GET /v1/dead-letters``, ``GET /v1/status``:
  the reads of ``api.reads``
- ``GET /health``, ``GET /ready``, ``GET /openapi.yaml``, ``GET /openapi.json``: open

One set of request rules for every route: ``_query`` refuses query parameters a handler
did not declare with ``api.requests.takes_query``; JSON routes read their body through
``_json_body`` (415 for another Content-Type); ``_delete_headers`` gives every delete
answer its model's rate-limit window.

Redis serves the bins, the delete rate limit and the workers' locations (slices and
deletion progress need them); while it is down those routes answer 503 with
``Retry-After`` and the others (publishing, health, an unknown deletion) go on.
Deletion requests themselves live in Kafka (``topics.deletion_requests``), and so do
alert rules (``topics.alert_rules``) and alerts (``topics.alerts``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
import redis
import redis.asyncio as aioredis
import redis.asyncio.retry
import redis.retry
import yaml
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from redis.backoff import NoBackoff

from driftline.api import reads
from driftline.api.auth import Principal, TokenStore
from driftline.api.deletions import deletion_messages, deletion_record
from driftline.api.lookups import parse_lookup
from driftline.api.periods import hours_of_periods, period_bins
from driftline.api.protocol import protocol_error
from driftline.api.rate_limit import DeleteRateLimit
from driftline.api.requests import (
    METRICS_PARAMETERS,
    SLICE_PARAMETERS,
    Cursor,
    MetricsQuery,
    RequestError,
    SliceQuery,
    content_type_problem,
    model_named_anywhere,
    ordered_ids,
    parse_delete,
    parse_metrics,
    parse_publish,
    parse_slice,
    publish_answer,
    publish_messages,
    query_parameters_of,
    query_values,
    takes_query,
)
from driftline.api.responses import csv_columns, deletion_status, public_row, to_csv
from driftline.api.service_metrics import record_requests
from driftline.api.workers import Workers, WorkerUnavailableError
from driftline.state import exact_json
from driftline.state.names import model_key
from driftline.state.periods import Period
from driftline.state.registered import RegisteredModel
from driftline.state.spec import ModelSpec
from driftline.state.wording import shown
from driftline.topics.admin import ensure_topics
from driftline.topics.alert_rules import AlertRules
from driftline.topics.alerts import Alerts
from driftline.topics.catalog import Topics, TopicSettings
from driftline.topics.deletion_requests import DeletionRequests, publish_request, withdraw_request
from driftline.topics.messages import deletion_key, ingest_key
from driftline.topics.model_registry import ModelRegistry
from driftline.topics.outages import OutageLog
from driftline.topics.ownership import PartitionOwners
from driftline.topics.partitioning import partition_for
from driftline.topics.producer import CheckedProducer, DeliveryError
from driftline.topics.redis_bins import RedisBins

log = logging.getLogger(__name__)

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
OPEN_PATHS = frozenset({"/health", "/ready", "/openapi.yaml", "/openapi.json"})
DELETE_PATHS = frozenset({"/v1/events/delete"})
_BODY_HEADERS = frozenset({"content-type", "content-length"})
# Routes (by name) that cannot answer without Redis; a success of one ends an outage.
REDIS_ROUTES = frozenset(
    {
        "delete",
        "delete-by-method",
        "deletion",
        "slice",
        "lookup",
        "metrics",
        "event",
        "counters",
        "status",
    }
)
# What a client should wait before retrying a route that needs Redis while it is down.
REDIS_RETRY_AFTER_S = 2


class ApiSettings(TopicSettings, Protocol):
    """What the API takes from the application's settings (``driftline.settings.Settings``
    is one), passed in; the internal secret comes resolved, beside them."""

    @property
    def redis(self) -> str: ...

    @property
    def api_host(self) -> str: ...

    @property
    def api_port(self) -> int: ...

    @property
    def api_metrics_host(self) -> str: ...

    @property
    def api_metrics_port(self) -> int: ...

    @property
    def api_tokens_file(self) -> Path: ...

    @property
    def api_max_body_bytes(self) -> int: ...

    @property
    def api_header_timeout_s(self) -> float: ...

    @property
    def api_body_timeout_s(self) -> float: ...

    @property
    def api_redis_timeout_s(self) -> float: ...

    @property
    def delete_requests_per_day(self) -> int: ...

    @property
    def max_event_bytes(self) -> int: ...


@dataclass
class Services:
    """Connections of one API process; built at startup, closed at cleanup."""

    settings: ApiSettings
    topics: Topics
    producer: CheckedProducer
    # One request at a time produces and flushes, so that a broker refusal is reported
    # to the request whose messages it refused.
    produce_lock: asyncio.Lock
    admin: AdminClient
    registry: ModelRegistry
    redis: redis.Redis
    aredis: aioredis.Redis
    tokens: TokenStore
    rate_limit: DeleteRateLimit
    deletion_requests: DeletionRequests
    alert_rules: AlertRules
    alerts: Alerts
    workers: Workers
    bins: RedisBins
    session: aiohttp.ClientSession
    # Logs a Redis outage once when it starts, once a minute, once when it ends.
    redis_outage: OutageLog


SERVICES = web.AppKey("services", Services)
SETTINGS = web.AppKey[ApiSettings]("settings")
# The secret the API sends to the workers' internal routes (``topics.internal_routes``).
INTERNAL_SECRET = web.AppKey("internal_secret", str)


def create_app(settings: ApiSettings, internal_secret: str) -> web.Application:
    app = web.Application(
        client_max_size=settings.api_max_body_bytes,
        middlewares=[record_requests, _delete_headers, _errors, _body_deadline, _auth, _query],
    )
    app[SETTINGS] = settings
    app[INTERNAL_SECRET] = internal_secret
    app.cleanup_ctx.append(_services)
    document = OPENAPI_PATH.read_text()
    as_json = orjson.dumps(yaml.safe_load(document))

    async def openapi_yaml(request: web.Request) -> web.Response:
        return web.Response(text=document, content_type="application/yaml")

    async def openapi_json(request: web.Request) -> web.Response:
        return web.Response(body=as_json, content_type="application/json")

    app.router.add_get("/health", health, allow_head=False)
    app.router.add_get("/ready", ready, allow_head=False)
    app.router.add_get("/openapi.yaml", openapi_yaml, allow_head=False)
    app.router.add_get("/openapi.json", openapi_json, allow_head=False)
    app.router.add_post("/v1/events/delete", delete_events, name="delete")
    app.router.add_delete("/v1/events", delete_events, name="delete-by-method")
    app.router.add_get(
        "/v1/deletions/{deletion_id}", get_deletion, allow_head=False, name="deletion"
    )
    app.router.add_get("/v1/events", get_events, allow_head=False, name="slice")
    app.router.add_post("/v1/events/lookup", lookup_events, name="lookup")
    app.router.add_post("/v1/events", insert_events)
    app.router.add_patch("/v1/events", update_events)
    app.router.add_get("/v1/metrics", get_metrics, allow_head=False, name="metrics")
    # Imported here: api.models builds on this module's services and helpers.
    from driftline.api.models import get_model, post_model

    app.router.add_post("/v1/models", post_model)
    app.router.add_get("/v1/models/{project_id}/{model_id}", get_model, allow_head=False)
    _add_alert_rule_routes(app)
    _add_alert_routes(app)
    app.router.add_get("/v1/events/{project_id}/{model_id}/{event_id:.+}", reads.get_event,
                       allow_head=False, name="event")  # fmt: skip
    app.router.add_get("/v1/models/{project_id}/{model_id}/counters", reads.get_counters,
                       allow_head=False, name="counters")  # fmt: skip
    app.router.add_get("/v1/models/{project_id}/{model_id}/dead-letters",
                       reads.get_model_dead_letters, allow_head=False)  # fmt: skip
    app.router.add_get("/v1/dead-letters", reads.get_all_dead_letters, allow_head=False)
    app.router.add_get("/v1/status", reads.get_status, allow_head=False, name="status")
    return app


def _add_alert_rule_routes(app: web.Application) -> None:
    # Imported here: api.alert_rules builds on this module's services and helpers.
    from driftline.api import alert_rules

    app.router.add_post("/v1/alert-rules", alert_rules.post_rule)
    app.router.add_get("/v1/alert-rules", alert_rules.list_rules, allow_head=False)
    one = "/v1/alert-rules/{project_id}/{model_id}/{rule_id}"
    app.router.add_put(one, alert_rules.put_rule)
    app.router.add_get(one, alert_rules.get_rule, allow_head=False)
    app.router.add_delete(one, alert_rules.delete_rule)


def _add_alert_routes(app: web.Application) -> None:
    # Imported here: api.alerts builds on this module's services and helpers.
    from driftline.api import alerts

    app.router.add_get("/v1/alerts", alerts.list_alerts, allow_head=False)


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    topics = Topics.for_settings(settings)
    # The API may start before any worker: it creates the topics it writes and reads.
    await asyncio.to_thread(ensure_topics, settings.bootstrap_servers, topics.owned)
    registry = await asyncio.to_thread(
        ModelRegistry, settings.bootstrap_servers, topics.models.name
    )
    deletion_requests = await asyncio.to_thread(
        DeletionRequests, settings.bootstrap_servers, topics.deletion_requests.name
    )
    alert_rules = await asyncio.to_thread(
        AlertRules, settings.bootstrap_servers, topics.alert_rules.name
    )
    alerts = await asyncio.to_thread(Alerts, settings.bootstrap_servers, topics.alerts.name)
    timeout = settings.api_redis_timeout_s
    sync_redis = redis.Redis.from_url(
        settings.redis,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=redis.retry.Retry(NoBackoff(), 1),
    )
    async_redis = aioredis.Redis.from_url(
        settings.redis,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=redis.asyncio.retry.Retry(NoBackoff(), 1),
    )
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
    prefix = settings.topic_prefix
    app[SERVICES] = Services(
        settings=settings,
        topics=topics,
        producer=CheckedProducer(settings.bootstrap_servers),
        produce_lock=asyncio.Lock(),
        admin=AdminClient({"bootstrap.servers": settings.bootstrap_servers}),
        registry=registry,
        redis=sync_redis,
        aredis=async_redis,
        tokens=TokenStore(settings.api_tokens_file),
        rate_limit=DeleteRateLimit(
            async_redis, prefix, settings.delete_requests_per_day, deletion_requests.count
        ),
        deletion_requests=deletion_requests,
        alert_rules=alert_rules,
        alerts=alerts,
        workers=Workers(
            PartitionOwners(sync_redis, prefix, own_url=""), session, app[INTERNAL_SECRET]
        ),
        bins=RedisBins(sync_redis, prefix),
        session=session,
        redis_outage=OutageLog(log, "api", "Redis", "metrics, deletes and slices answer 503"),
    )
    yield
    services = app[SERVICES]
    await session.close()
    await async_redis.aclose()
    sync_redis.close()
    await asyncio.to_thread(services.producer.flush, 10.0)
    await asyncio.to_thread(registry.close)
    await asyncio.to_thread(deletion_requests.close)
    await asyncio.to_thread(alert_rules.close)
    await asyncio.to_thread(alerts.close)


# --- middlewares -------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _query(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One rule for every route: a query parameter the route does not take is a 400 that
    names it, and so is one given twice that the route takes once."""
    if request.match_info.http_exception is None:
        known, repeatable = query_parameters_of(request.match_info.handler)
        query_values(request.query.items(), known, repeatable)
    return await handler(request)


@web.middleware
async def _delete_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer of a delete route carries the model's rate-limit window (SPEC §2), also
    those refused before the body was read as a delete request (401, 413, 415, a query or a
    body that is not valid): the model is then read from the body as leniently as can be.
    When no model can be found at all, the headers describe a window of no model: the
    daily limit, all of it remaining, and the next midnight UTC."""
    response = await handler(request)
    if not _is_delete(request) or "X-RateLimit-Limit" in response.headers:
        return response
    try:
        raw = await request.read()
    except web.HTTPException:
        raw = b""  # too large to read: no model can be found in it
    named = model_named_anywhere(raw, request.query)
    try:
        window = await request.app[SERVICES].rate_limit.peek(
            None if named is None else model_key(*named)
        )
    except Exception:
        log.exception("the rate-limit headers of %s %s", request.method, request.path)
        return response
    response.headers.update(window.headers())
    return response


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as JSON ``{"error": ...}`` with a sentence that says what to do."""
    try:
        response = await handler(request)
    except RequestError as error:
        return error_response(error.status, error.message)
    except BodyTimeoutError as error:
        response = error_response(408, str(error))
        response.force_close()
        return response
    except HttpProcessingError as error:
        # The body broke its own framing (a bad chunk, a short Content-Length).
        status, message = protocol_error(error, 400)
        response = error_response(status, message)
        response.force_close()
        return response
    except WorkerUnavailableError as error:
        return error_response(503, str(error), {"Retry-After": "1"})
    except redis.RedisError as error:
        return redis_unavailable(request.app[SERVICES], error)
    except KafkaException as error:
        return error_response(
            503, f"the broker did not answer ({error}); retry shortly", {"Retry-After": "1"}
        )
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].api_max_body_bytes
        return error_response(
            413, f"the body is larger than {limit:,} bytes; send the events in smaller batches"
        )
    except web.HTTPException as error:
        if error.status < 400:
            raise
        kept = {k: v for k, v in error.headers.items() if k.lower() not in _BODY_HEADERS}
        return error_response(error.status, error.reason, kept)
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal error; the API's log has the details")
    if request.match_info.route.name in REDIS_ROUTES and response.status < 300:
        request.app[SERVICES].redis_outage.succeeded()
    return response


class BodyTimeoutError(TimeoutError):
    """The body did not arrive in time. A ``TimeoutError`` so that aiohttp, finding it
    again on the unread body after the 408, closes the connection at once instead of
    reading (lingering on) the rest."""


@web.middleware
async def _body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A body must arrive within ``api_body_timeout_s``: past it, the handler's read
    fails (408, then the connection closes), so a slow client cannot hold a connection."""
    if not request.body_exists:
        return await handler(request)
    seconds = request.app[SETTINGS].api_body_timeout_s
    content = request.content

    def expire() -> None:
        if not content.is_eof():
            content.set_exception(
                BodyTimeoutError(
                    f"the body did not arrive within {seconds:g} s; send it at once, or "
                    "in smaller batches"
                )
            )

    timer = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        return await handler(request)
    finally:
        timer.cancel()


def redis_unavailable(
    services: Services, error: redis.RedisError, headers: dict[str, str] | None = None
) -> web.Response:
    services.redis_outage.failed(error)
    return error_response(
        503,
        f"Redis is unavailable ({error}); this route needs it (metric bins, delete rate "
        "limits and the workers' locations are kept there). Publishing events goes on; "
        f"retry this in {REDIS_RETRY_AFTER_S} s or so",
        {**(headers or {}), "Retry-After": str(REDIS_RETRY_AFTER_S)},
    )


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in OPEN_PATHS:
        return await handler(request)
    principal = request.app[SERVICES].tokens.authenticate(request.headers.get("Authorization"))
    if principal is None:
        return error_response(
            401,
            "a valid API token is required: send 'Authorization: Bearer <token>' (an "
            "operator creates one with `driftline api token --project P`)",
            {"WWW-Authenticate": 'Bearer realm="driftline"'},
        )
    request["principal"] = principal
    return await handler(request)


def _is_delete(request: web.Request) -> bool:
    return request.path in DELETE_PATHS or (
        request.path == "/v1/events" and request.method == "DELETE"
    )


# --- open endpoints ----------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    """Ready when the broker answers for the ingest topic. Redis is reported, not required:
    publishing does not need it, and the routes that do answer 503 by themselves."""
    services = request.app[SERVICES]
    try:
        await services.aredis.ping()
    except (redis.RedisError, OSError) as error:
        redis_state = f"unavailable: {error}"
        if isinstance(error, redis.RedisError):
            services.redis_outage.failed(error)
    else:
        redis_state = "ok"
        services.redis_outage.succeeded()
    topic = services.topics.ingest.name
    try:
        metadata = await asyncio.to_thread(services.admin.list_topics, topic, 3.0)
    except Exception as error:
        return error_response(503, f"Kafka does not answer: {error}")
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return error_response(503, f"the ingest topic {topic} is not available yet")
    return json_response({"status": "ready", "redis": redis_state})


# --- deletion ------------------------------------------------------------------------------


async def delete_events(request: web.Request) -> web.Response:
    """A refusal before the count is taken (400, 403, 404, 415) costs nothing; its
    rate-limit headers are added by ``_delete_headers``."""
    services = request.app[SERVICES]
    principal: Principal = request["principal"]
    deletion = parse_delete(await _json_body(request))
    if not principal.may_use(deletion.project_id):
        raise _forbidden(deletion.project_id)
    await _spec(services, deletion.project_id, deletion.model_id)
    model = model_key(deletion.project_id, deletion.model_id)
    now = datetime.now(UTC)
    try:
        window = await services.rate_limit.take(model, now)
    except redis.RedisError as error:
        # The count cannot be taken; the headers still say where it stands (from Kafka).
        return redis_unavailable(services, error, (await services.rate_limit.peek(model)).headers())
    if window.exceeded:
        return error_response(
            429,
            f"model {model} has had its {window.limit} delete requests of this UTC day; "
            f"retry after {window.headers()['Retry-After']} s (at midnight UTC)",
            window.headers(),
        )
    deletion_id = uuid.uuid4().hex
    settings = services.settings
    messages = deletion_messages(
        deletion, deletion_id, settings.ingest_partitions, settings.max_event_bytes
    )
    record = deletion_record(deletion, deletion_id, messages, now)
    key = deletion_key(deletion.project_id, deletion.model_id)
    try:
        # The request first: once a command runs, its status can always be asked.
        await _produce_request(services, record)
        await _produce(services, [(key, value, partition) for partition, value in messages])
    except DeliveryError as error:
        await _withdraw(services, deletion_id, model, now)
        refreshed = await services.rate_limit.peek(model)
        return error_response(
            503, f"the broker did not accept the request ({error}); retry", refreshed.headers()
        )
    # Known here at once (the view would read it back on a miss); off the event loop,
    # since a catch-up may hold the view's lock.
    await asyncio.to_thread(services.deletion_requests.add, record)
    status_url = f"/v1/deletions/{deletion_id}"
    return json_response(
        {"deletion_id": deletion_id, "status_url": status_url},
        202,
        {**window.headers(), "Location": status_url},
    )


async def get_deletion(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    deletion_id = request.match_info["deletion_id"]
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    record = await asyncio.to_thread(services.deletion_requests.get, deletion_id, now_ms)
    if record is None:
        raise RequestError(404, f"no deletion {shown(deletion_id)} (ids are kept 30 days)")
    if not request["principal"].may_use(record["project_id"]):
        raise _forbidden(record["project_id"])
    expected: dict[str, int] = record["expected"]
    records = await services.workers.deletion_records(deletion_id, map(int, expected))
    status = deletion_status(deletion_id, expected, records)
    status.update(
        model=record["model"],
        kind=record["kind"],
        update_metrics=record["update_metrics"],
        created=record["created"],
    )
    return json_response(status)


# --- slices --------------------------------------------------------------------------------


@takes_query(*SLICE_PARAMETERS, repeatable={"event_id"})
async def get_events(request: web.Request) -> web.Response:
    return await _slice(request, parse_slice(request.query.items()))


async def lookup_events(request: web.Request) -> web.Response:
    """The slice by ids of ``GET /v1/events``, for more ids than a request line holds."""
    return await _slice(request, parse_lookup(await _json_body(request)))


async def _slice(request: web.Request, query: SliceQuery) -> web.Response:
    services = request.app[SERVICES]
    _check_scope(request, query.project_id)
    spec = await _spec(services, query.project_id, query.model_id)
    if query.event_ids is not None:
        events, cursor = await _slice_by_ids(services, query)
    else:
        events, cursor = await _slice_by_range(services, query)
    rows = [public_row(event) for event in events]
    next_cursor = None if cursor is None else cursor.encode()
    if query.format == "csv":
        headers = {"X-Next-Cursor": next_cursor} if next_cursor else {}
        return web.Response(
            text=to_csv(csv_columns(spec, rows), rows), content_type="text/csv", headers=headers
        )
    return json_response({"rows": rows, "next_cursor": next_cursor})


async def _slice_by_range(
    services: Services, query: SliceQuery
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Partition after partition, each in its hour-index order, from the cursor on."""
    assert query.time_range is not None
    start, end = query.time_range
    model = model_key(query.project_id, query.model_id)
    partition, after = query.cursor.partition, query.cursor.after
    events: list[dict[str, Any]] = []
    while partition < services.settings.ingest_partitions:
        wanted = query.limit - len(events)
        page, next_after = await services.workers.page(partition, model, start, end, after, wanted)
        events.extend(page)
        if next_after is not None:
            return events, query.cursor_at(partition, next_after)
        partition, after = partition + 1, ""
        if len(events) >= query.limit:
            break
    done = partition >= services.settings.ingest_partitions
    return events, None if done else query.cursor_at(partition)


async def _slice_by_ids(
    services: Services, query: SliceQuery
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """The ids in (partition, request order), ``limit`` ids a page; missing ids are skipped."""
    assert query.event_ids is not None
    partitions = services.settings.ingest_partitions
    project_id, model_id = query.project_id, query.model_id
    ordered = ordered_ids(
        query.event_ids,
        lambda event_id: partition_for(ingest_key(project_id, model_id, event_id), partitions),
    )
    offset = query.cursor.offset
    page = ordered[offset : offset + query.limit]
    by_partition: dict[int, list[str]] = {}
    for partition, event_id in page:
        by_partition.setdefault(partition, []).append(event_id)
    model = model_key(project_id, model_id)
    found = await asyncio.gather(
        *(services.workers.lookup(p, model, ids) for p, ids in by_partition.items())
    )
    events = [event for part in found for event in part]
    if query.time_range is not None:
        start, end = query.time_range
        events = [e for e in events if start <= e["event_timestamp"] < end]
    rank = {event_id: i for i, (_, event_id) in enumerate(page)}
    events.sort(key=lambda e: rank.get(e["event_id"], len(rank)))
    more = offset + query.limit < len(ordered)
    return events, query.cursor_at(offset=offset + query.limit) if more else None


# --- publishing ------------------------------------------------------------------------------


async def insert_events(request: web.Request) -> web.Response:
    return await _publish(request, update=False)


async def update_events(request: web.Request) -> web.Response:
    return await _publish(request, update=True)


async def _publish(request: web.Request, update: bool) -> web.Response:
    """Valid rows are produced; invalid ones are reported by index and cost nothing else."""
    services = request.app[SERVICES]
    batch = parse_publish(await _json_body(request))
    _check_scope(request, batch.project_id)
    spec = await _spec(services, batch.project_id, batch.model_id)
    # Checking up to api_max_body_bytes of rows is CPU work: off the event loop.
    checked = await asyncio.to_thread(
        publish_messages, spec, batch.rows, update, services.settings.max_event_bytes
    )
    messages, event_ids, errors, dropped = checked
    if messages:
        try:
            await _produce(services, messages)
        except DeliveryError as error:
            message = f"the broker did not accept the events ({error}); retry"
            raise RequestError(503, message) from None
    body, status = publish_answer(event_ids, errors, dropped)
    return json_response(body, status)


# --- metrics ---------------------------------------------------------------------------------


@takes_query(*METRICS_PARAMETERS)
async def get_metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    query = parse_metrics(request.query.items())
    _check_scope(request, query.project_id)
    registered = await _registered(services, query.project_id, query.model_id)
    if query.period is Period.HOUR:
        bins = await asyncio.to_thread(
            services.bins.read_range, registered.key, query.start, query.end
        )
    else:
        bins = await _period_bins(services, registered, query)
    body = {"project_id": query.project_id, "model_id": query.model_id, "bins": bins}
    return json_response(body)


async def _period_bins(
    services: Services, registered: RegisteredModel, query: MetricsQuery
) -> list[dict[str, Any]]:
    """The day or week bins the query selects, summed from their hour bins."""
    hours = hours_of_periods(query.start, query.end, query.period)
    if hours is None:
        return []
    hour_bins = await asyncio.to_thread(services.bins.read_range, registered.key, *hours)
    return period_bins(registered, hour_bins, query.period)


# --- helpers ---------------------------------------------------------------------------------


async def _spec(services: Services, project_id: str, model_id: str) -> ModelSpec:
    return (await _registered(services, project_id, model_id)).spec


async def _registered(services: Services, project_id: str, model_id: str) -> RegisteredModel:
    """The model's spec and baseline as registered; 404 when it is not."""
    model = await asyncio.to_thread(services.registry.get, model_key(project_id, model_id))
    if model is None:
        raise RequestError(
            404, f"model {project_id}/{model_id} is not registered; register it first"
        )
    return model


async def _produce(services: Services, messages: list[tuple[bytes, bytes, int]]) -> None:
    topic = services.topics.ingest.name
    producer = services.producer

    def send() -> None:
        for number, (key, value, partition) in enumerate(messages):
            producer.produce(topic, key, value, partition=partition)
            if number % 1000 == 999:
                producer.poll()
        producer.flush(30.0)

    async with services.produce_lock:
        await asyncio.to_thread(send)


async def _produce_request(services: Services, record: dict[str, Any]) -> None:
    topic = services.topics.deletion_requests.name
    async with services.produce_lock:
        await asyncio.to_thread(publish_request, services.producer, topic, record)


async def _withdraw(services: Services, deletion_id: str, model: str, now: datetime) -> None:
    """Undo an accepted request whose commands the broker refused (best effort: the
    broker has just failed, and Redis may be down too)."""
    await asyncio.to_thread(services.deletion_requests.withdraw, deletion_id)
    topic = services.topics.deletion_requests.name
    try:
        async with services.produce_lock:
            await asyncio.to_thread(withdraw_request, services.producer, topic, deletion_id)
    except DeliveryError as error:
        log.warning("deletion %s: could not withdraw its request: %s", deletion_id, error)
    try:
        await services.rate_limit.give_back(model, now)
    except redis.RedisError as error:
        log.warning("deletion %s: could not give its rate-limit count back: %s", deletion_id, error)


async def _json_body(request: web.Request) -> Any:
    """The body of a JSON route: 415 for another Content-Type, 400 if it is not JSON.

    Routes opt in by calling this (a route that also takes uploads checks its own types).
    """
    problem = content_type_problem(request.headers.get("Content-Type"))
    if problem is not None:
        raise RequestError(415, problem)
    raw = await request.read()
    if not raw.strip():
        raise RequestError(400, "the body is empty; send a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise RequestError(400, f"the body is not valid JSON: {error}") from None


def _check_scope(request: web.Request, project_id: str) -> None:
    if not request["principal"].may_use(project_id):
        raise _forbidden(project_id)


def _forbidden(project_id: str) -> RequestError:
    return RequestError(
        403, f"this token is not allowed to use project '{project_id}'; ask for one that is"
    )


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=exact_json.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return json_response({"error": message}, status, headers)
