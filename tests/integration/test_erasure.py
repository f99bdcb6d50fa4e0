"""Deletion on the real broker and Redis: exact retraction, progress, and erasure.

The commands go straight to the ingest topic here (``tests/support/deletions.py``);
the REST API that sends them in production has its own tests.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis
from confluent_kafka.admin import AdminClient

from driftline.client import Driftline
from driftline.settings import Settings
from driftline.state.bins import HOUR_MS
from driftline.topics.catalog import Topics
from driftline.topics.reading import read_topic
from driftline.topics.waiting import wait_until
from tests.support.api import reading_through_api
from tests.support.deletions import (
    deletion_finished,
    deletion_progress,
    send_id_deletion,
    send_range_deletion,
)
from tests.support.hourly_bins import bins_in_redis, recomputed
from tests.support.models import CHURN_BASELINE, CHURN_SPEC, HOUR0, publish_churn
from tests.support.pipeline import stored_events, wait_for_lag_zero

pytestmark = pytest.mark.integration


def rows(prefix: str, count: int, first_hour: int, hours: int) -> list[dict[str, Any]]:
    return [
        {"event_id": f"{prefix}-{i:05d}-x", "timestamp": HOUR0 + (first_hour + i % hours) * HOUR_MS
         + i, "age": 20 + i % 50, "plan": ["free", "pro"][i % 2], "score": (i % 10) / 10,
         "churned": i % 2}
        for i in range(count)
    ]  # fmt: skip


def test_a_range_deletion_with_update_metrics_leaves_bins_equal_to_the_recomputation(
    settings: Settings, start_worker: Any
) -> None:
    settings = settings.with_overrides(event_deletion_batch_size=50)
    start_worker(settings)
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        publish_churn(client, rows("e", 900, 0, 3))
    wait_until(lambda: sum(b["counts"]["n"] for b in bins_in_redis(settings).values()) == 900,
               timeout_s=30, what="900 events in the bins")  # fmt: skip

    send_range_deletion(settings, "shop", "churn", "d1", HOUR0 + HOUR_MS, HOUR0 + 2 * HOUR_MS,
                        update_metrics=True)  # fmt: skip
    wait_until(lambda: deletion_finished(settings, "d1", settings.ingest_partitions), timeout_s=30,
               what="the deletion to finish on every partition")  # fmt: skip
    assert sum(r["deleted"] for r in deletion_progress(settings, "d1").values()) == 300
    wait_for_lag_zero(settings)
    assert {ts // HOUR_MS - HOUR0 // HOUR_MS for ts, _ in stored_events(settings).values()} == {
        0, 2,
    }  # fmt: skip

    def settled() -> bool:
        found = {h: {k: v for k, v in b["counts"].items() if k != "delay_ms"}
                 for h, b in bins_in_redis(settings).items()}  # fmt: skip
        return found == recomputed(settings)

    wait_until(settled, timeout_s=30, what="Redis bins equal to the batch recomputation")


def test_a_worker_killed_mid_deletion_finishes_it_exactly_after_a_restart(
    settings: Settings, start_worker: Any
) -> None:
    settings = settings.with_overrides(event_deletion_batch_size=10)
    first = start_worker(settings)
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        publish_churn(client, rows("e", 2400, 0, 3))
    wait_for_lag_zero(settings)
    send_range_deletion(settings, "shop", "churn", "d5", HOUR0, HOUR0 + 2 * HOUR_MS,
                        update_metrics=True)  # fmt: skip

    seen: list[int] = []

    def under_way() -> bool:
        seen.append(sum(r["deleted"] for r in deletion_progress(settings, "d5").values()))
        return seen[-1] > 0

    wait_until(under_way, timeout_s=30, interval_s=0.01, what="the deletion under way")
    first.kill()
    assert seen[-1] < 1600, "the deletion finished before the worker could be killed"
    start_worker(settings)
    wait_until(lambda: deletion_finished(settings, "d5", settings.ingest_partitions), timeout_s=60,
               what="the deletion finished after the restart")  # fmt: skip
    assert sum(r["deleted"] for r in deletion_progress(settings, "d5").values()) == 1600
    wait_for_lag_zero(settings)
    hours = {ts // HOUR_MS - HOUR0 // HOUR_MS for ts, _ in stored_events(settings).values()}
    assert (hours, len(stored_events(settings))) == ({2}, 800)

    def settled() -> bool:
        found = {h: {k: v for k, v in b["counts"].items() if k != "delay_ms"}
                 for h, b in bins_in_redis(settings).items()}  # fmt: skip
        return found == recomputed(settings)

    wait_until(settled, timeout_s=30, what="Redis bins equal to the batch recomputation")


def test_deletion_without_update_metrics_keeps_the_bins(
    settings: Settings, start_worker: Any
) -> None:
    start_worker()
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        publish_churn(client, rows("e", 200, 0, 2))
    wait_until(lambda: sum(b["counts"]["n"] for b in bins_in_redis(settings).values()) == 200,
               timeout_s=30, what="200 events in the bins")  # fmt: skip
    before = {h: b["counts"] for h, b in bins_in_redis(settings).items()}
    doomed = [f"e-{i:05d}-x" for i in range(0, 200, 3)]
    send_id_deletion(settings, "shop", "churn", "d2", doomed, update_metrics=False)
    wait_until(
        lambda: sum(r["deleted"] for r in deletion_progress(settings, "d2").values())
        == len(doomed),
        timeout_s=30, what="the ids to be deleted",
    )  # fmt: skip
    wait_for_lag_zero(settings)
    assert len(stored_events(settings)) == 200 - len(doomed)
    time.sleep(2 * settings.emit_interval_s)
    assert {h: b["counts"] for h, b in bins_in_redis(settings).items()} == before


def test_erasure_leaves_no_trace_in_any_topic_but_the_raw_ingest_one(
    settings: Settings, start_worker: Any, start_api: Any
) -> None:
    """Deleted ids vanish from every changelog once compaction has run (small segments and
    tombstone retention here), and from Redis and the worker's reads at once."""
    settings = settings.with_overrides(compaction_lag_ms=1000, tombstone_retention_ms=1000)
    start_worker(settings)  # creates the topics with these compaction settings
    api_settings = reading_through_api(settings, start_api)
    kept, gone = rows("keep", 100, 0, 2), rows("gone", 60, 0, 2)
    doomed_by_range = rows("span", 40, 3, 1)
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        publish_churn(client, kept + gone + doomed_by_range)
        labels = [{"event_id": r["event_id"], "churned": 0} for r in gone[:20]]
        publish_churn(client, labels, update=True)
        wait_for_lag_zero(settings)
        gone_ids = [r["event_id"] for r in gone]
        send_id_deletion(settings, "shop", "churn", "d3", gone_ids, update_metrics=True)
        send_range_deletion(settings, "shop", "churn", "d4", HOUR0 + 3 * HOUR_MS,
                            HOUR0 + 4 * HOUR_MS, update_metrics=True)  # fmt: skip
        wait_until(lambda: deletion_finished(settings, "d4", settings.ingest_partitions),
                   timeout_s=30, what="the range deletion")  # fmt: skip
        wait_for_lag_zero(settings)
        erased = [*gone_ids, *(r["event_id"] for r in doomed_by_range)]
        with Driftline(api_settings) as reader:
            assert all(reader.get_event("shop", "churn", event_id) is None for event_id in erased)
        assert len(stored_events(settings)) == len(kept)
        traces = _redis_traces(settings, erased)
        assert traces == [], traces

        # Compaction needs newer records behind the deleted ones: keep the model busy.
        def clean() -> bool:
            publish_churn(
                client, [{**row, "event_id": f"filler-{uuid.uuid4().hex}"} for row in kept[:5]]
            )
            return not _topic_traces(settings, erased)

        wait_until(clean, timeout_s=120, interval_s=2, what="compaction to erase every trace")


def _topic_traces(settings: Settings, erased: list[str]) -> list[str]:
    """Where a deleted id still appears: every topic of this prefix but the raw ingest."""
    ingest = Topics.for_settings(settings).ingest.name
    names = AdminClient({"bootstrap.servers": settings.bootstrap_servers}).list_topics(timeout=10)
    needles = [event_id.encode() for event_id in erased]
    found = []
    for topic in sorted(names.topics):
        if not topic.startswith(settings.topic_prefix) or topic == ingest:
            continue
        for message in read_topic(settings.bootstrap_servers, topic):
            blob = (message.key() or b"") + b"|" + (message.value() or b"")
            found.extend(f"{topic}@{message.offset()}" for n in needles if n in blob)
    return found


def _redis_traces(settings: Settings, erased: list[str]) -> list[str]:
    """Keys of this prefix whose name or content mentions a deleted id."""
    client = redis.Redis.from_url(settings.redis)
    found = []
    for key in client.scan_iter(f"{settings.topic_prefix}*"):
        blob = key + b"|" + _content(client, key)
        found.extend(key.decode() for event_id in erased if event_id.encode() in blob)
    return found


def _content(client: redis.Redis, key: bytes) -> bytes:
    kind = client.type(key)
    if kind == b"string":
        return bytes(client.get(key) or b"")
    if kind == b"hash":
        return b"|".join(k + b"=" + v for k, v in client.hgetall(key).items())
    if kind == b"zset":
        return b"|".join(client.zrange(key, 0, -1))
    if kind == b"set":
        return b"|".join(client.smembers(key))
    if kind == b"list":
        return b"|".join(client.lrange(key, 0, -1))
    return b""
