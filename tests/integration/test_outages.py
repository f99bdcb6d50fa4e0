"""Outages are waited out, not exited on (SPEC §5): a worker keeps its state through a
broker outage of any length, resumes by itself, and says so a few times, not thousands."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from driftline.client import Driftline
from driftline.settings import Settings
from driftline.stack import LocalKafka
from tests.support.hourly_bins import assert_redis_equals_recomputation
from tests.support.models import CHURN_BASELINE, CHURN_SPEC, HOUR0
from tests.support.pipeline import stored_events, wait_for_lag_zero

pytestmark = pytest.mark.integration

OUTAGE_S = 40


def rows(first: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    return [
        {"event_id": f"e{i}", "timestamp": HOUR0 + rng.randrange(3 * 3_600_000),
         "age": rng.randint(18, 90), "plan": rng.choice(["free", "pro"]), "score": rng.random(),
         "churned": rng.choice([None, 0, 1])}
        for i in range(first, first + count)
    ]  # fmt: skip


def test_a_worker_waits_out_a_broker_outage_and_resumes_by_itself(
    settings: Settings, own_kafka: LocalKafka, start_worker: Any
) -> None:
    settings = settings.with_overrides(kafka_bootstrap_servers=own_kafka.bootstrap_servers)
    worker = start_worker(settings)
    rng = random.Random(8)
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        client.publish_events_batch("shop", "churn", rows(0, 300, rng))
    wait_for_lag_zero(settings)
    with Driftline(settings) as client:
        # Dirty bins and batches in flight when the broker goes away.
        client.publish_events_batch("shop", "churn", rows(300, 300, rng))
    log_before = worker.log_path.read_text(errors="replace").count("\n")
    own_kafka.stop()
    time.sleep(OUTAGE_S)  # the outage itself, not a wait for a condition
    assert worker.process.poll() is None, "the worker exited during the outage"
    outage_log = worker.log_path.read_text(errors="replace").splitlines()[log_before:]
    own_kafka.start()

    with Driftline(settings) as client:
        client.publish_events_batch("shop", "churn", rows(600, 300, rng))
    wait_for_lag_zero(settings, timeout_s=180)
    assert set(stored_events(settings)) == {f"e{i}" for i in range(900)}
    assert_redis_equals_recomputation(settings)
    assert worker.process.poll() is None
    # A few lines per client and cause, not one per retry (once ~2,200 in 30 s).
    assert len(outage_log) < 150, "\n".join(outage_log[-50:])
