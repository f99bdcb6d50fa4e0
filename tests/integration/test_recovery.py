"""A worker that dies mid-stream resumes without losing or double-applying any message."""

from __future__ import annotations

import random
import shutil
from typing import Any

import pytest

from driftline.client import Driftline
from driftline.settings import Settings
from driftline.stack.worker import WorkerProcess
from driftline.topics.catalog import Topics
from driftline.topics.messages import encode_ingest, ingest_key
from driftline.topics.producer import CheckedProducer
from driftline.topics.progress import merge_progress
from driftline.topics.waiting import wait_until
from tests.support.models import FRAUD_SPEC, T0
from tests.support.pipeline import stored_events, wait_for_lag_zero, worker_counters
from tests.support.reference_model import ReferenceEvents

pytestmark = pytest.mark.integration

EVENTS = 60_000


def publish_workload(settings: Settings) -> tuple[ReferenceEvents, int]:
    """Inserts, then label updates that also carry a read-only field (counted as dropped)."""
    rng = random.Random(11)
    model = ReferenceEvents.for_spec(FRAUD_SPEC, settings.parked_updates_per_event)
    producer = CheckedProducer(settings.bootstrap_servers)
    topic = Topics.for_settings(settings).ingest.name
    dropped = 0
    for i in range(EVENTS):
        event_id = f"e{i}"
        if i % 3 == 2:
            columns: dict[str, Any] = {"is_fraud": rng.randint(0, 1), "score": 0.0}
            target = f"e{i - 1}"
            producer.produce(
                topic,
                ingest_key("shop", "fraud", target),
                encode_ingest("update", "shop", "fraud", target, columns),
            )
            model.update(target, columns, None)
            dropped += 1
        else:
            columns = {"age": rng.randint(1, 99), "score": rng.random(), "is_fraud": None}
            producer.produce(
                topic,
                ingest_key("shop", "fraud", event_id),
                encode_ingest("insert", "shop", "fraud", event_id, columns, T0 + i),
            )
            model.insert(event_id, columns, T0 + i)
    producer.flush()
    return model, dropped


def committed_total(settings: Settings) -> int:
    progress = merge_progress(settings)
    try:
        return progress.committed()
    finally:
        progress.close()


def counters(worker: WorkerProcess) -> dict[str, Any]:
    return worker_counters(worker.settings, worker.url, "shop/fraud")


@pytest.mark.parametrize("lose_local_state", [False, True], ids=["same-disk", "new-disk"])
def test_sigkill_mid_stream_then_restart_applies_every_message_once(
    settings: Settings, start_worker: Any, lose_local_state: bool
) -> None:
    with Driftline(settings) as client:
        client.register_model(FRAUD_SPEC)
    model, dropped = publish_workload(settings)

    # Small batches, so that the kill lands mid-stream however fast the worker merges.
    first = start_worker(settings.with_overrides(batch_max_messages=100))
    wait_until(
        lambda: committed_total(settings) > 0, timeout_s=60, what="some progress", interval_s=0.02
    )
    first.kill()
    assert committed_total(settings) < EVENTS, "the worker finished before it could be killed"
    if lose_local_state:
        shutil.rmtree(settings.data_dir)

    second = start_worker()
    wait_for_lag_zero(settings)

    assert stored_events(settings) == model.events
    assert counters(second) == {
        "dead_letters": 0,
        "dropped_fields": {"score": dropped},
        "forwarded": 0,
        "parked_updates": 0,
        "partitions": settings.ingest_partitions,
    }
