"""Redis down, wiped or replaced (SPEC §5): ingestion goes on, the API answers 503 where it
needs Redis, and everything Redis holds comes back from Kafka by itself.

Each test runs its own Redis server on a free port (not the session's), so that it can
kill, wipe or restart it without disturbing the other tests.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

from driftline.client import Driftline
from driftline.internal_secret import internal_secret
from driftline.settings import Settings
from driftline.stack import LocalRedis
from driftline.stack.worker import WorkerProcess
from driftline.state.bins import HOUR_MS
from driftline.topics.internal_routes import HEADER
from driftline.topics.waiting import wait_until
from tests.support.api import StartApi, call, ids_body, register, rows, token_for
from tests.support.deletions import deletion_progress, send_range_deletion
from tests.support.hourly_bins import bins_in_redis, bins_in_topic, redis_matches_topic
from tests.support.models import CHURN_BASELINE, CHURN_SPEC, HOUR0
from tests.support.pipeline import wait_for_lag_zero

pytestmark = pytest.mark.integration


def client_rows(first: int, count: int, hours: int = 3) -> list[dict[str, Any]]:
    return [
        {"event_id": f"e{i}", "timestamp": HOUR0 + (i % hours) * HOUR_MS + i, "age": 20 + i % 50,
         "plan": ["free", "pro"][i % 2], "score": (i % 10) / 10, "churned": None}
        for i in range(first, first + count)
    ]  # fmt: skip


def events_in_topic(settings: Settings) -> int:
    return sum(b["counts"]["n"] for b in bins_in_topic(settings).values() if b is not None)


def read_event(worker: WorkerProcess, event_id: str) -> tuple[int, Any]:
    """The event from the worker itself, as the API asks it: it needs no Redis."""
    url = f"{worker.url}/internal/events/shop/churn/{event_id}"
    request = urllib.request.Request(url, headers={HEADER: internal_secret(worker.settings)})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def alive(worker: WorkerProcess) -> bool:
    return worker.process is not None and worker.process.poll() is None


def slice_path(start_ms: int, end_ms: int) -> str:
    return f"/v1/events?project_id=shop&model_id=churn&start_time={start_ms}&end_time={end_ms}"


def redis_lines(worker: WorkerProcess) -> list[str]:
    text = worker.log_path.read_text(errors="replace")
    return [line for line in text.splitlines() if "redis" in line.lower()]


def test_a_worker_rides_out_a_redis_outage_and_catches_up(
    own_redis: LocalRedis, settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    own_redis.start()
    settings = settings.with_overrides(redis_url=own_redis.url)
    worker = start_worker(settings)
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        client.publish_events_batch("shop", "churn", client_rows(0, 90))
        wait_until(lambda: sum(b["counts"]["n"] for b in bins_in_redis(settings).values()) == 90,
                   timeout_s=30, what="90 events in the Redis bins")  # fmt: skip

        own_redis.kill()
        client.publish_events_batch("shop", "churn", client_rows(90, 210, hours=5))
        labels = [{"event_id": f"e{i}", "churned": i % 2} for i in range(0, 300, 3)]
        client.publish_events_batch("shop", "churn", labels, update_event=True)
        wait_for_lag_zero(settings)
        # The bins agent has emitted the new bins: the projection has met the outage.
        wait_until(lambda: events_in_topic(settings) == 300, timeout_s=30,
                   what="300 events in the metrics topic")  # fmt: skip
        wait_until(lambda: read_event(worker, "e299")[0] == 200, timeout_s=10,
                   what="an event of the outage readable from the worker")  # fmt: skip
        status, body = read_event(worker, "e3")
        assert (status, body["event"]["churned"]) == (200, 1)
        assert alive(worker), "the worker died"

    own_redis.start()  # the same data directory: what Redis had saved comes back
    wait_until(lambda: redis_matches_topic(settings), timeout_s=30,
               what="the Redis bins to equal the metrics topic after the outage")  # fmt: skip
    assert sum(b["counts"]["n"] for b in bins_in_redis(settings).values()) == 300
    assert alive(worker)
    # The outage is logged when it starts and ends, not once per retry (nor a traceback).
    lines = redis_lines(worker)
    assert 1 <= len(lines) <= 8, "\n".join(lines)


def test_a_worker_starts_and_ingests_while_redis_is_down(
    own_redis: LocalRedis,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    start_api: StartApi,
) -> None:
    settings = settings.with_overrides(redis_url=own_redis.url)  # nothing answers there yet
    worker = start_worker(settings)
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        client.publish_events_batch("shop", "churn", client_rows(0, 60))
    wait_for_lag_zero(settings)
    assert read_event(worker, "e59")[0] == 200
    wait_until(lambda: events_in_topic(settings) == 60, timeout_s=30,
               what="60 events in the metrics topic")  # fmt: skip

    own_redis.start()
    wait_until(lambda: redis_matches_topic(settings), timeout_s=30,
               what="the Redis bins once Redis is up")  # fmt: skip
    # The worker's partitions are published: slices through the API find them.
    api = start_api(settings)
    token = token_for(api, "shop")
    query = slice_path(HOUR0, HOUR0 + 3 * HOUR_MS)
    wait_until(lambda: call(api, "GET", query, token=token).status == 200, timeout_s=15,
               what="slices served once Redis is up")  # fmt: skip
    assert len(call(api, "GET", query, token=token).body["rows"]) == 60


def test_after_a_flushall_everything_comes_back_from_kafka(
    own_redis: LocalRedis,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    start_api: StartApi,
) -> None:
    own_redis.start()
    settings = settings.with_overrides(redis_url=own_redis.url, delete_requests_per_day=3)
    start_worker(settings)
    api = start_api(settings)
    register(settings)
    token = token_for(api, "shop")
    events = rows(60, 3)
    assert call(api, "POST", "/v1/events", {"project_id": "shop", "model_id": "churn",
                "events": events}, token=token).status == 200  # fmt: skip
    wait_until(lambda: sum(b["counts"]["n"] for b in bins_in_redis(settings).values()) == 60,
               timeout_s=30, what="60 events in the Redis bins")  # fmt: skip

    def status_of(deletion_id: str) -> dict[str, Any]:
        answer = call(api, "GET", f"/v1/deletions/{deletion_id}", token=token)
        return {"http": answer.status, **answer.body}

    accepted = []
    for event_id in ("e-0000", "e-0001"):
        answer = call(api, "POST", "/v1/events/delete", ids_body(event_id, update_metrics=True),
                      token=token)  # fmt: skip
        assert answer.status == 202, answer.body
        accepted.append(answer.body["deletion_id"])
    assert answer.headers["X-RateLimit-Remaining"] == "1"
    for deletion_id in accepted:
        wait_until(lambda d=deletion_id: status_of(d).get("status") == "done", timeout_s=30,
                   what="the deletions done")  # fmt: skip
    wait_until(lambda: sum(b["counts"]["n"] for b in bins_in_redis(settings).values()) == 58,
               timeout_s=30, what="the deleted events retracted")  # fmt: skip

    redis.Redis.from_url(own_redis.url).flushall()

    wait_until(lambda: redis_matches_topic(settings), timeout_s=15,
               what="the bins back in Redis after FLUSHALL")  # fmt: skip
    query = slice_path(HOUR0, HOUR0 + 3 * HOUR_MS)
    wait_until(lambda: call(api, "GET", query, token=token).status == 200, timeout_s=15,
               what="slices served again (partition owners back)")  # fmt: skip
    assert len(call(api, "GET", query, token=token).body["rows"]) == 58
    for deletion_id in accepted:
        found = status_of(deletion_id)
        assert (found["http"], found["status"], found["deleted"]) == (200, "done", 1), found

    # The day's count came back: two accepted, so this third one is the last.
    third = call(api, "POST", "/v1/events/delete", ids_body("e-0002", update_metrics=True),
                 token=token)  # fmt: skip
    assert third.status == 202, third.body
    assert third.headers["X-RateLimit-Remaining"] == "0"
    wait_until(lambda: status_of(third.body["deletion_id"]).get("status") == "done",
               timeout_s=15, what="a deletion made after the FLUSHALL done")  # fmt: skip
    assert status_of(third.body["deletion_id"])["deleted"] == 1
    refused = call(api, "POST", "/v1/events/delete", ids_body("e-0003"), token=token)
    assert refused.status == 429
    wait_until(lambda: redis_matches_topic(settings)
               and sum(b["counts"]["n"] for b in bins_in_redis(settings).values()) == 57,
               timeout_s=15, what="Redis equal to the metrics topic")  # fmt: skip


def test_the_api_answers_503_with_retry_after_while_redis_is_down(
    own_redis: LocalRedis,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
    start_api: StartApi,
) -> None:
    own_redis.start()
    settings = settings.with_overrides(redis_url=own_redis.url)
    worker = start_worker(settings)
    api = start_api(settings)
    register(settings)
    token = token_for(api, "shop")
    assert call(api, "POST", "/v1/events", {"project_id": "shop", "model_id": "churn",
                "events": rows(20, 2)}, token=token).status == 200  # fmt: skip
    wait_until(lambda: len(bins_in_redis(settings)) == 2, timeout_s=30, what="two bins")
    deletion = call(api, "POST", "/v1/events/delete", ids_body("e-0000"), token=token)
    assert deletion.status == 202

    own_redis.kill()
    metrics = f"/v1/metrics?project_id=shop&model_id=churn&start={HOUR0}&end={HOUR0 + 2 * HOUR_MS}"
    slice_query = slice_path(HOUR0, HOUR0 + HOUR_MS)
    needing_redis = [
        ("GET", metrics, None),
        ("POST", "/v1/events/delete", ids_body("e-0001")),
        ("DELETE", "/v1/events", ids_body("e-0001")),
        ("GET", deletion.body["status_url"], None),
        ("GET", slice_query, None),
        # Reads routed to the partitions' owners, whose addresses are kept in Redis.
        ("GET", "/v1/events/shop/churn/e-0001", None),
        ("GET", "/v1/models/shop/churn/counters", None),
        ("GET", "/v1/status", None),
    ]
    for method, path, body in needing_redis:
        answer = call(api, method, path, body, token=token)
        assert answer.status == 503, (method, path, answer.status, answer.raw[:300])
        assert int(answer.headers["Retry-After"]) > 0, (method, path)
        assert "Redis" in answer.body["error"], answer.body

    # What does not need Redis goes on: publishing, health, readiness, an unknown deletion.
    published = call(api, "POST", "/v1/events", {"project_id": "shop", "model_id": "churn",
                     "events": rows(30, 2, prefix="f")}, token=token)  # fmt: skip
    assert published.status == 200, published.body
    assert call(api, "GET", "/health").status == 200
    assert call(api, "GET", "/ready").status == 200
    assert call(api, "GET", "/v1/deletions/nope", token=token).status == 404
    wait_for_lag_zero(settings)
    assert read_event(worker, "f-0029")[0] == 200

    own_redis.start()
    wait_until(lambda: call(api, "GET", metrics, token=token).status == 200, timeout_s=15,
               what="metrics answered again once Redis is back")  # fmt: skip
    wait_until(lambda: sum(b["counts"]["n"] for b in bins_in_redis(settings).values()) == 50,
               timeout_s=30, what="the events published meanwhile in the bins")  # fmt: skip


def test_a_range_deletion_waits_for_redis_without_stopping_ingestion(
    own_redis: LocalRedis, settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    """A step checks the daily cap in Redis: while it cannot, the step waits for the next
    tick; the worker ingests meanwhile, and the deletion finishes once Redis is back."""
    own_redis.start()
    settings = settings.with_overrides(redis_url=own_redis.url)
    worker = start_worker(settings)
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        client.publish_events_batch("shop", "churn", client_rows(0, 60))
        wait_for_lag_zero(settings)

        own_redis.kill()
        send_range_deletion(settings, "shop", "churn", "d1", HOUR0, HOUR0 + HOUR_MS, True)
        client.publish_events_batch("shop", "churn", client_rows(60, 30))
        wait_until(lambda: read_event(worker, "e89")[0] == 200, timeout_s=60,
                   what="an event published during the outage")  # fmt: skip
        wait_until(
            lambda: len(deletion_progress(settings, "d1")) == settings.ingest_partitions,
            timeout_s=30, what="every partition to take the deletion",
        )  # fmt: skip
        records = deletion_progress(settings, "d1").values()
        assert {(r["state"], r["deleted"]) for r in records} == {("running", 0)}
        assert alive(worker)

    own_redis.start()
    wait_until(
        lambda: all(r["state"] == "done" for r in deletion_progress(settings, "d1").values()),
        timeout_s=60, what="the deletion to finish once Redis is back",
    )  # fmt: skip
    deleted = sum(r["deleted"] for r in deletion_progress(settings, "d1").values())
    assert deleted == 30  # e0, e3, ... of the first hour, from both batches
    assert read_event(worker, "e0")[0] == 404
    assert read_event(worker, "e1")[0] == 200
