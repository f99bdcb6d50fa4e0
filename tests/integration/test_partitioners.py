"""Producers may use any partitioner (SPEC §4): kcat, Go and C clients use librdkafka's
default (CRC32), not Java's murmur2. Whatever partition an event's messages arrive on,
updates, deletes and re-inserts by id find it, and nothing is counted twice."""

from __future__ import annotations

import random
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message, Producer

from driftline.client import Driftline
from driftline.settings import Settings
from driftline.topics.catalog import Topics
from driftline.topics.messages import encode_ingest, ingest_key
from driftline.topics.partitioning import partition_for
from tests.support.deletions import send_id_deletion
from tests.support.hourly_bins import assert_redis_equals_recomputation
from tests.support.models import CHURN_BASELINE, CHURN_SPEC, HOUR0
from tests.support.pipeline import stored_events, wait_for_lag_zero, worker_counters, worker_get
from tests.support.reference_model import ReferenceEvents

pytestmark = pytest.mark.integration


def publish_like_kcat(settings: Settings, rows: list[tuple[str, dict[str, Any], int]]) -> list[int]:
    """Inserts through librdkafka's default partitioner; returns where each one landed."""
    landed: list[int] = [-1] * len(rows)

    def delivered(error: KafkaError | None, message: Message) -> None:
        assert error is None, error
        landed[int(message.key().decode().rsplit("-", 1)[1])] = message.partition()

    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})  # CRC32 by default
    topic = Topics.for_settings(settings).ingest.name
    for event_id, columns, timestamp in rows:
        value = encode_ingest("insert", "shop", "churn", event_id, columns, timestamp)
        producer.produce(topic, value, ingest_key("shop", "churn", event_id), on_delivery=delivered)
    producer.flush(30)
    return landed


def counters(settings: Settings) -> dict[str, Any]:
    return worker_counters(settings, settings.worker_url, "shop/churn")


def deletion(settings: Settings, deletion_id: str) -> list[dict[str, Any]]:
    url = f"{settings.worker_url}/internal/deletions/{deletion_id}"
    return list(worker_get(settings, url)["partitions"].values())


def test_events_sent_with_another_partitioner_are_found_by_id(
    settings: Settings, start_worker: Any
) -> None:
    start_worker()
    rng = random.Random(5)
    model = ReferenceEvents.for_spec(CHURN_SPEC, settings.parked_updates_per_event)
    rows = [
        (f"ev-{i}", {"age": rng.randint(18, 90), "plan": rng.choice(["free", "pro"]),
                     "score": rng.random(), "churned": None}, HOUR0 + rng.randrange(3_600_000))
        for i in range(1000)
    ]  # fmt: skip
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        landed = publish_like_kcat(settings, rows)
        for event_id, columns, timestamp in rows:
            model.insert(event_id, columns, timestamp)
        homes = [partition_for(ingest_key("shop", "churn", e), settings.ingest_partitions)
                 for e, _, _ in rows]  # fmt: skip
        misrouted = sum(home != partition for home, partition in zip(homes, landed, strict=True))
        assert misrouted > 500  # most of them: what the test is about

        labelled = [event_id for event_id, _, _ in rows[:100]]
        labels = [{"event_id": e, "churned": rng.randint(0, 1)} for e in labelled]
        client.publish_events_batch("shop", "churn", labels, update_event=True)
        for label in labels:
            model.update(label["event_id"], {"churned": label["churned"]}, None)
        wait_for_lag_zero(settings)

        doomed = [event_id for event_id, _, _ in rows[100:200]]
        send_id_deletion(settings, "shop", "churn", "d1", doomed, update_metrics=True)
        for event_id in doomed:
            model.delete(event_id)
        again = rows[:10]
        client.publish_events_batch(
            "shop", "churn",
            [{"event_id": e, "timestamp": ts, **columns} for e, columns, ts in again],
        )  # fmt: skip
        for event_id, columns, timestamp in again:
            model.insert(event_id, columns, timestamp)
        wait_for_lag_zero(settings)

    assert stored_events(settings) == model.events
    assert counters(settings)["forwarded"] == misrouted
    assert counters(settings)["dead_letters"] == 0
    records = deletion(settings, "d1")
    assert sum(r["requested"] for r in records) == 100
    assert sum(r["deleted"] for r in records) == 100
    assert_redis_equals_recomputation(settings)
