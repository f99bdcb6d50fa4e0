"""The event pipeline on the real broker and Redis, checked against the plain-Python model."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from driftline.client import Driftline
from driftline.settings import Settings
from driftline.stack.worker import WorkerProcess
from driftline.topics.catalog import Topics
from driftline.topics.dead_letters import read_dead_letters
from driftline.topics.messages import encode_ingest, ingest_key
from driftline.topics.producer import CheckedProducer
from tests.support.models import FRAUD_SPEC, T0
from tests.support.pipeline import stored_events, wait_for_lag_zero, worker_counters, worker_get
from tests.support.reference_model import ReferenceEvents

pytestmark = pytest.mark.integration

HOUR = 3_600_000


def read_back(worker: WorkerProcess, event_id: str) -> dict[str, Any]:
    """The event as the worker answers the API."""
    url = f"{worker.url}/internal/events/shop/fraud/{event_id}"
    body: dict[str, Any] = worker_get(worker.settings, url)
    return body


def test_inserts_updates_and_deletes_in_shuffled_order_match_the_model(
    settings: Settings, start_worker: Any
) -> None:
    rng = random.Random(7)
    model = ReferenceEvents.for_spec(FRAUD_SPEC, settings.parked_updates_per_event)
    operations: list[tuple[str, str, dict[str, Any], int | None]] = []
    for i in range(10_000):
        columns = {
            "age": rng.randint(18, 90),
            "amount": round(rng.uniform(1, 500), 2),
            "country": rng.choice(["fr", "de", "us", None]),
            "score": rng.random(),
            "is_fraud": None,
            "blocked": rng.random() < 0.1,
        }
        operations.append(("insert", f"e{i}", columns, T0 + rng.randrange(24 * HOUR)))
    labelled = rng.sample(range(10_000), 3_000)
    for i in labelled:
        moved = T0 + rng.randrange(24 * HOUR) if rng.random() < 0.1 else None
        update = {"is_fraud": rng.randint(0, 1), "uri": f"s3://b/{i}", "score": -1.0}
        operations.append(("update", f"e{i}", update, moved))
    rng.shuffle(operations)  # many labels now precede their insert
    operations.append(("update", "late-insert", {"is_fraud": 1}, None))
    operations.append(("insert", "late-insert", {"age": 40, "score": 0.3}, T0))
    for i in rng.sample(range(10_000), 500):  # duplicates: a retried publish replaces
        operations.append(("insert", f"e{i}", {"age": 1, "score": 0.5}, T0 + HOUR))
    for i in rng.sample(range(10_000), 700):
        operations.append(("delete", f"e{i}", {}, None))

    start_worker()
    with Driftline(settings) as client:
        client.register_model(FRAUD_SPEC)
        producer = CheckedProducer(settings.bootstrap_servers)
        topic = client.topics.ingest.name
        for op, event_id, columns, ts in operations:
            value = encode_ingest(
                op, "shop", "fraud", event_id, columns if op != "delete" else None, ts
            )
            producer.produce(topic, ingest_key("shop", "fraud", event_id), value)
            if op == "insert":
                model.insert(event_id, columns, ts if ts is not None else 0)
            elif op == "update":
                model.update(event_id, columns, ts)
            else:
                model.delete(event_id)
        producer.flush()
    wait_for_lag_zero(settings)

    assert stored_events(settings) == model.events
    worker = WorkerProcess(settings, settings.data_dir / "unused.log")
    for event_id in rng.sample(sorted(model.events), 50):
        body = read_back(worker, event_id)
        assert (body["event_timestamp"], body["event"]) == model.events[event_id]


def test_poison_messages_are_dead_lettered_while_valid_ones_are_kept(
    settings: Settings, start_worker: Any
) -> None:
    settings = settings.with_overrides(max_event_bytes=64 * 1024)
    start_worker(settings)
    topics = Topics.for_settings(settings)
    with Driftline(settings) as client:
        client.register_model(FRAUD_SPEC)
    good = encode_ingest("insert", "shop", "fraud", "ok1", {"age": 3, "score": 0.2}, T0)
    poison: list[tuple[bytes | None, bytes, str]] = [
        (b"shop/fraud/x1", b"{not json", "not valid JSON"),
        (b"shop/fraud/x2", b"[1, 2]", "must be a JSON object"),
        (
            b"shop/fraud/x3",
            orjson.dumps(
                {
                    "op": "insert",
                    "project_id": "shop",
                    "model_id": "fraud",
                    "event_id": "x3",
                    "event": {},
                    "event_timestamp": "yesterday",
                }
            ),
            "'event_timestamp' must be UTC milliseconds",
        ),
        (
            b"shop/fraud/x4",
            orjson.dumps(
                {
                    "op": "insert",
                    "project_id": "shop",
                    "model_id": "fraud",
                    "event_id": "x4",
                    "event": "age=3",
                }
            ),
            "needs 'event', a JSON object",
        ),
        (
            b"shop/nope/x5",
            encode_ingest("insert", "shop", "nope", "x5", {"age": 1}),
            "model 'shop/nope' is not registered",
        ),
        (
            b"shop/fraud/",
            orjson.dumps(
                {
                    "op": "update",
                    "project_id": "shop",
                    "model_id": "fraud",
                    "event": {"is_fraud": 1},
                }
            ),
            "an update needs 'event_id'",
        ),
        (
            b"shop/fraud/x7",
            encode_ingest("insert", "shop", "fraud", "x7", {"uri": "x" * 70_000}),
            "exceeds the limit of 65536 bytes",
        ),
        (b"shop/fraud/x8", orjson.dumps({"op": "upsert"}), "'op' must be one of"),
        (
            b"wrong-key",
            encode_ingest("insert", "shop", "fraud", "x9", {"age": 1}),
            "message key must be 'shop/fraud/x9'",
        ),
    ]
    producer = CheckedProducer(settings.bootstrap_servers)
    for key, value, _ in poison:
        producer.produce(topics.ingest.name, key, value)
        producer.produce(topics.ingest.name, b"shop/fraud/ok1", good)
    last = encode_ingest("insert", "shop", "fraud", "ok2", {"age": 5, "score": 0.9}, T0)
    producer.produce(topics.ingest.name, b"shop/fraud/ok2", last)
    producer.flush()
    wait_for_lag_zero(settings)

    letters = read_dead_letters(settings.bootstrap_servers, topics.dead_letters.name)
    by_value = {letter.value: letter for letter in letters}
    assert len(letters) == len(poison)
    for key, value, reason in poison:
        letter = by_value[value]  # the original bytes, untouched
        assert letter.key == key
        assert reason in letter.reason
        assert letter.source_topic == topics.ingest.name
    assert set(stored_events(settings)) == {"ok1", "ok2"}


def test_an_update_whose_insert_never_comes_is_dead_lettered_after_the_timeout(
    settings: Settings, start_worker: Any
) -> None:
    settings = settings.with_overrides(parked_update_timeout_s=1.0)
    worker = start_worker(settings)
    with Driftline(settings) as client:
        client.register_model(FRAUD_SPEC)
        client.publish_event("shop", "fraud", {"is_fraud": 1}, event_id="ghost", update_event=True)
    dead_letters = Topics.for_settings(settings).dead_letters.name

    def expired() -> list[Any]:
        return read_dead_letters(settings.bootstrap_servers, dead_letters)

    from driftline.topics.waiting import wait_until

    wait_until(lambda: len(expired()) == 1, timeout_s=30, what="the parked update to expire")
    (letter,) = expired()
    assert "its insert never arrived" in letter.reason
    assert orjson.loads(letter.value or b"")["event_id"] == "ghost"
    assert worker_counters(settings, worker.url, "shop/fraud")["dead_letters"] == 1
