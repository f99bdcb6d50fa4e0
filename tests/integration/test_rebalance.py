"""Partitions move between workers (join, death) and the state moves with them, exactly."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest

from driftline.client import Driftline
from driftline.internal_secret import internal_secret
from driftline.settings import Settings
from driftline.stack.kafka import free_port
from driftline.stack.worker import WorkerProcess
from driftline.state.commands import event_key
from driftline.topics.internal_routes import HEADER
from driftline.topics.partitioning import partition_for
from driftline.topics.waiting import wait_until
from tests.support.models import FRAUD_SPEC, T0
from tests.support.pipeline import stored_events, wait_for_lag_zero
from tests.support.reference_model import ReferenceEvents

pytestmark = pytest.mark.integration


def as_the_api(settings: Settings) -> dict[str, str]:
    """The header with which the API reads from workers (and a 307 keeps it)."""
    return {HEADER: internal_secret(settings)}


def assigned(worker: WorkerProcess) -> list[int]:
    try:
        with urllib.request.urlopen(f"{worker.url}/ready", timeout=2) as response:
            partitions: list[int] = orjson.loads(response.read())["partitions"]
            return partitions
    except (urllib.error.URLError, ConnectionError):
        return []


def publish_round(
    client: Driftline, model: ReferenceEvents, round_number: int, count: int = 2_000
) -> None:
    rows = []
    for i in range(count):
        event_id = f"r{round_number}-{i}"
        row = {"event_id": event_id, "timestamp": T0 + i, "age": i % 90, "score": 0.5}
        rows.append(row)
        model.insert(event_id, {"age": i % 90, "score": 0.5}, T0 + i)
    client.publish_events_batch("shop", "fraud", rows)
    labels = [{"event_id": f"r{r}-{i}", "is_fraud": r % 2} for r in range(round_number + 1)
              for i in range(0, count, 7)]  # fmt: skip
    client.publish_events_batch("shop", "fraud", labels, update_event=True)
    for label in labels:
        model.update(label["event_id"], {"is_fraud": label["is_fraud"]}, None)


def test_state_follows_partitions_when_workers_join_and_die(
    settings: Settings, start_worker: Any
) -> None:
    model = ReferenceEvents.for_spec(FRAUD_SPEC, settings.parked_updates_per_event)
    partitions = list(range(settings.ingest_partitions))
    first = start_worker()
    with Driftline(settings) as client:
        client.register_model(FRAUD_SPEC)
        publish_round(client, model, 0)
        wait_for_lag_zero(settings)

        second = start_worker(
            settings.with_overrides(worker_port=free_port(), data_dir=settings.data_dir / "b")
        )
        wait_until(
            lambda: (
                sorted(assigned(first) + assigned(second)) == partitions
                and bool(assigned(first))
                and bool(assigned(second))
            ),
            timeout_s=60,
            what="the partitions to be split between two workers",
        )
        publish_round(client, model, 1)
        wait_for_lag_zero(settings)

        # A read sent to the wrong worker is pointed at the owner.
        event_id = next(
            e for e in model.events
            if partition_for(event_key("shop/fraud", e).encode(), len(partitions))
            in assigned(second)
        )  # fmt: skip
        request = urllib.request.Request(
            f"{first.url}/internal/events/shop/fraud/{event_id}", headers=as_the_api(settings)
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # follows the 307
            assert response.url.startswith(second.url)
            body = orjson.loads(response.read())
        assert (body["event_timestamp"], body["event"]) == model.events[event_id]

        second.kill()
        # The first worker gets back partitions whose local copy is now stale.
        wait_until(
            lambda: assigned(first) == partitions,
            timeout_s=60,
            what="the surviving worker to own every partition",
        )
        publish_round(client, model, 2)
        wait_for_lag_zero(settings)

    assert stored_events(settings) == model.events
    for event_id in list(model.events)[::500]:
        url = f"{first.url}/internal/events/shop/fraud/{event_id}"
        request = urllib.request.Request(url, headers=as_the_api(settings))
        with urllib.request.urlopen(request) as response:
            body = orjson.loads(response.read())
        assert (body["event_timestamp"], body["event"]) == model.events[event_id]
