"""HTTP views of the worker, for the API only: events, counters, progress; health and
Prometheus's ``/metrics``.

Clients read through the API (tokens, project scopes): every view here but ``/health``,
``/ready`` and ``/metrics`` requires the secret the API and the workers share
(``driftline.internal_secret``) and answers 401 without it. The port binds loopback by
default (``DRIFTLINE_WORKER_HOST``). A view that needs Redis (finding another
partition's owner) answers 503 with ``Retry-After`` while it is down.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import redis
from faust.web import Request, Response, View
from rocksdict import DbClosedError

from driftline.state import exact_json
from driftline.state.commands import event_key
from driftline.state.counters import ModelCounters
from driftline.state.events import StoredEvent
from driftline.state.hour_index import indexed_in_range
from driftline.state.names import model_key
from driftline.state.partition_tables import COUNTERS, DELETIONS, DIRTY, EVENTS, HOURS, PARKED
from driftline.state.store import MEMORY, PartitionStore
from driftline.state.tables import PartitionTransaction
from driftline.topics.internal_routes import HEADER, matches
from driftline.topics.partitioning import partition_for
from driftline.topics.service_metrics import EXPOSITION_CONTENT_TYPE, exposition

if TYPE_CHECKING:
    from driftline.agents.app import Worker

Handler = Callable[..., Awaitable[Response]]

# What a client should wait before retrying a view that needs Redis while it is down.
REDIS_RETRY_AFTER_S = 2


def register_views(worker: Worker) -> None:
    app = worker.app
    partitions = worker.settings.ingest_partitions
    internal = internal_only(worker.internal_secret)

    @app.page("/internal/events/{project_id}/{model_id}/{event_id}")
    @internal
    async def get_event(
        view: View, request: Request, project_id: str, model_id: str, event_id: str
    ) -> Response:
        """One stored event, or a redirect to the worker that holds its partition."""
        key = event_key(model_key(project_id, model_id), event_id)
        partition = partition_for(key.encode(), partitions)
        store = worker.merge.stores.get(partition)
        if store is None:
            try:
                owner = worker.owners.owner_of(partition)
            except redis.RedisError as error:
                return _redis_down(view, error)
            if owner is not None and owner != worker.owners.own_url:
                location = f"{owner}/internal/events/{project_id}/{model_id}/{event_id}"
                return _json(view, {"owner": owner}, 307, headers={"Location": location})
            return _error(view, 503, f"partition {partition} is not assigned to any worker yet")
        event = PartitionTransaction(store).get(EVENTS, key)
        if event is None:
            return _error(view, 404, f"no event {event_id!r} in model {project_id}/{model_id}")
        return _json(view, {"project_id": project_id, "model_id": model_id,
                            **_row(event)})  # fmt: skip

    @app.page("/internal/models/{project_id}/{model_id}/counters")
    @internal
    async def get_counters(
        view: View, request: Request, project_id: str, model_id: str
    ) -> Response:
        """The model's counters in each partition this worker holds (the API sums them)."""
        model = model_key(project_id, model_id)
        found = {
            str(partition): partition_counters(store, model)
            for partition, store in list(worker.merge.stores.items())
        }
        return _json(view, {"partitions": found})

    @app.page("/internal/progress")
    @internal
    async def progress(view: View, request: Request) -> Response:
        """The bins partitions this worker holds and the bins they have yet to emit."""
        stores = list(worker.bins.stores.items())
        dirty = sum(sum(1 for _ in store.items(DIRTY.name)) for _, store in stores)
        return _json(view, {"bins_partitions": sorted(p for p, _ in stores), "dirty_bins": dirty})

    # --- for the API process: per-partition reads, routed by the owner keys ---------

    @app.page("/internal/deletions/{deletion_id}")
    @internal
    async def deletion_progress(view: View, request: Request, deletion_id: str) -> Response:
        """What this worker's partitions know of a deletion request."""
        found = {}
        for partition, store in list(worker.merge.stores.items()):
            record = PartitionTransaction(store).get(DELETIONS, deletion_id)
            if record is not None:
                found[str(partition)] = record.public()
        return _json(view, {"partitions": found})

    @app.page("/internal/partitions/{partition}/events")
    @internal
    async def partition_slice(view: View, request: Request, partition: str) -> Response:
        """A page of one partition's events of a model in [start, end), in hour-index order."""
        store = worker.merge.stores.get(int(partition))
        if store is None:
            return _not_here(view, worker, int(partition))
        query = request.query
        try:
            start, end = int(query["start"]), int(query["end"])
            limit = int(query.get("limit", "1000"))
        except (KeyError, ValueError):
            return _error(view, 400, "start and end (UTC ms) are required; limit is a number")
        after = bytes.fromhex(query.get("after", ""))
        events, last = slice_events(store, query.get("model", ""), start, end, after, limit)
        return _json(view, {"events": events, "next": None if last is None else last.hex()})

    @app.page("/internal/partitions/{partition}/events/lookup")
    class PartitionLookup(View):
        """Events of one partition by id: POST {"model": "project/model", "event_ids": [...]}."""

        @internal
        async def post(self, request: Request, partition: str) -> Response:
            store = worker.merge.stores.get(int(partition))
            if store is None:
                return _not_here(self, worker, int(partition))
            body = orjson.loads(await request.read())
            model = body["model"]
            keys = [event_key(model, str(event_id)) for event_id in body["event_ids"]]
            found = PartitionTransaction(store).get_many(EVENTS, keys)
            return _json(self, {"events": [_row(event) for event in found if event is not None]})

    @app.page("/internal/memory")
    @internal
    async def memory(view: View, request: Request) -> Response:
        """The process's resident memory and what its RocksDB stores say they hold."""
        stores = [*worker.merge.stores.values(), *worker.bins.stores.values()]
        return _json(view, {"rss_bytes": resident_bytes(), "rocksdb": store_memory(stores)})

    @app.page("/health")
    async def health(view: View, request: Request) -> Response:
        return _json(view, {"status": "ok"})

    @app.page("/metrics")
    async def metrics(view: View, request: Request) -> Response:
        """The service metrics for Prometheus; no secret, as /ready: the port is internal."""
        return view.bytes(exposition(), headers={"Content-Type": EXPOSITION_CONTENT_TYPE})

    @app.page("/ready")
    async def ready(view: View, request: Request) -> Response:
        if not (worker.merge.ready.is_set() and worker.bins.ready.is_set()):
            return _error(view, 503, "the agents have no partitions assigned yet")
        return _json(view, {"status": "ready", "partitions": sorted(worker.merge.stores)})


def resident_bytes() -> int:
    """VmRSS of this process (Linux), 0 where /proc has no such line."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def store_memory(stores: list[PartitionStore]) -> dict[str, int]:
    """RocksDB memory of these stores, summed (a shared cache counted once)."""
    total = dict.fromkeys(MEMORY, 0)
    caches: dict[int, int] = {}
    for store in stores:
        try:
            found = store.memory()
        except DbClosedError:
            continue  # revoked meanwhile
        for name in ("size-all-mem-tables", "estimate-table-readers-mem"):
            total[name] += found[name]
        caches[store.cache_id] = found["block-cache-usage"]
    total["block-cache-usage"] = sum(caches.values())
    total["stores"] = len(stores)
    total["caches"] = len(caches)
    return total


def slice_events(
    store: PartitionStore, model: str, start_ms: int, end_ms: int, after: bytes, limit: int
) -> tuple[list[dict[str, Any]], bytes | None]:
    """Up to ``limit`` events and the index key to continue after (None: no more)."""
    rows: list[dict[str, Any]] = []
    tx = PartitionTransaction(store)
    for index_key in indexed_in_range(tx, model, start_ms, end_ms, after):
        event = tx.get(EVENTS, event_key(model, index_key[2]))
        if event is not None and start_ms <= event.timestamp_ms < end_ms:
            rows.append(_row(event))
            if len(rows) >= limit:
                return rows, HOURS.key.encode(index_key)
    return rows, None


def _row(event: StoredEvent) -> dict[str, Any]:
    return {"event_id": event.event_id, "event_timestamp": event.timestamp_ms,
            "event": event.columns}  # fmt: skip


def partition_counters(store: PartitionStore, model: str) -> dict[str, Any]:
    """One partition's counters of a model, with the updates still waiting for an insert."""
    tx = PartitionTransaction(store)
    counters = tx.get(COUNTERS, model) or ModelCounters()
    waiting = sum(len(value) for _, value in tx.items(PARKED, (model + "/").encode()))
    return {**counters.to_dict(), "parked_updates": waiting}


def internal_only(secret: str) -> Callable[[Handler], Handler]:
    """Guard a view with the secret only the API and the workers share: 401 without it.

    The worker's port serves any partition's events with no token or project scope;
    those checks are the API's, so every view but /health, /ready and /metrics answers only it.
    """

    def guard(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(view: View, request: Request, *args: Any, **kwargs: Any) -> Response:
            if matches(secret, request.headers.get(HEADER)):
                return await handler(view, request, *args, **kwargs)
            return _error(
                view,
                401,
                "this worker answers only the Driftline API; read through the API "
                f"(DRIFTLINE_API_URL), which sends the {HEADER} header",
            )

        return guarded

    return guard


def _not_here(view: View, worker: Worker, partition: int) -> Response:
    try:
        owner = worker.owners.owner_of(partition)
    except redis.RedisError:
        owner = None  # the caller retries once the new owner is published
    body = {"error": f"partition {partition} is not held by this worker", "owner": owner}
    return _json(view, body, 409)


def _json(
    view: View, body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return view.bytes(
        exact_json.dumps(body), content_type="application/json", status=status, headers=headers
    )


def _error(view: View, status: int, message: str) -> Response:
    return _json(view, {"error": message}, status)


def _redis_down(view: View, error: redis.RedisError) -> Response:
    message = f"Redis is unavailable ({error}); this view needs it, retry shortly"
    headers = {"Retry-After": str(REDIS_RETRY_AFTER_S)}
    return _json(view, {"error": message}, 503, headers=headers)
