"""The PostgreSQL projection through faults: its server stopped mid-stream (ingestion and
Redis go on meanwhile; PostgreSQL catches up to the exact rows by itself once back), and
records on the metrics topic that PostgreSQL refuses or cannot read (dead-lettered with
their reason; the bins after them still projected).

``make test`` (CI) runs a short outage (~10 s); ``make faults`` (``DRIFTLINE_FAULTS=long``)
the issue's 60 s.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from driftline.client import Driftline
from driftline.settings import Settings
from driftline.stack import LocalPostgres
from driftline.stack.worker import WorkerProcess
from driftline.state.bins import HOUR_MS
from driftline.topics.catalog import Topics
from driftline.topics.dead_letters import read_dead_letters, reason_kind
from driftline.topics.metric_bins import METRICS_VALUE
from driftline.topics.postgres_tables import schema_name
from driftline.topics.producer import CheckedProducer
from driftline.topics.waiting import wait_until
from tests.support.hourly_bins import bins_in_redis, redis_matches_topic
from tests.support.models import CHURN_BASELINE, CHURN_SPEC, HOUR0
from tests.support.pipeline import wait_for_lag_zero
from tests.support.postgres import postgres_matches_topic

pytestmark = [pytest.mark.integration, pytest.mark.faults]

OUTAGE_S = 60.0 if os.environ.get("DRIFTLINE_FAULTS") == "long" else 10.0
BATCH = 50  # events a second through the outage


def rows(first: int, count: int) -> list[dict[str, Any]]:
    return [
        {"event_id": f"e{i}", "timestamp": HOUR0 + (i % 5) * HOUR_MS + i, "age": 20 + i % 50,
         "plan": ["free", "pro"][i % 2], "score": (i % 10) / 10, "churned": None}
        for i in range(first, first + count)
    ]  # fmt: skip


def events_in_redis(settings: Settings) -> int:
    return sum(b["counts"]["n"] for b in bins_in_redis(settings).values())


def alive(worker: WorkerProcess) -> bool:
    return worker.process is not None and worker.process.poll() is None


def test_postgres_stopped_mid_stream_is_waited_out_and_caught_up_exactly(
    own_postgres: LocalPostgres, settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    own_postgres.start()
    settings = settings.with_overrides(postgres_url=own_postgres.url)
    worker = start_worker(settings)
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        client.publish_events_batch("shop", "churn", rows(0, 200))
        wait_until(lambda: postgres_matches_topic(settings), timeout_s=60,
                   what="PostgreSQL to hold the first bins")  # fmt: skip

        own_postgres.stop()
        sent, started = 200, time.monotonic()
        while time.monotonic() - started < OUTAGE_S:
            client.publish_events_batch("shop", "churn", rows(sent, BATCH))
            labels = [{"event_id": f"e{i}", "churned": i % 2} for i in range(sent - BATCH, sent)]
            client.publish_events_batch("shop", "churn", labels, update_event=True)
            sent += BATCH
            time.sleep(1.0)
        wait_for_lag_zero(settings)
        # Ingestion and Redis went on while PostgreSQL was away.
        wait_until(
            lambda: events_in_redis(settings) == sent and redis_matches_topic(settings),
            timeout_s=60, what=f"Redis to hold all {sent} events during the outage",
        )  # fmt: skip
        assert not postgres_matches_topic(settings)
        assert alive(worker), "the worker died"

    own_postgres.start()
    wait_until(lambda: postgres_matches_topic(settings), timeout_s=60,
               what="PostgreSQL to catch up to the exact rows by itself")  # fmt: skip
    assert alive(worker)
    log = worker.log_path.read_text(errors="replace")
    outage_lines = [line for line in log.splitlines() if "PostgreSQL" in line]
    assert 1 <= len(outage_lines) <= 12, "\n".join(outage_lines)


def foreign_bin(hour: int, events: int) -> dict[str, Any]:
    """A document another producer wrote to the metrics topic (its model unregistered)."""
    return {
        "project_id": "shop", "model_id": "foreign", "hour_start_ms": hour * HOUR_MS,
        "hour_end_ms": (hour + 1) * HOUR_MS, "version": 1, "emitted_at_ms": HOUR0,
        "counts": {"n": events},
        "metrics": {"traffic": {"events": events, "labelled": 0, "mean_ingest_delay_ms": None},
                    "integrity": {"age": {"missing": 1, "type_mismatch": 0,
                                          "range_violation": 0}}},
    }  # fmt: skip


def foreign_hours_in_postgres(settings: Settings) -> dict[int, int]:
    schema = schema_name(settings.topic_prefix)
    try:
        with psycopg.connect(settings.postgres) as connection:
            found = connection.execute(
                f"SELECT hour, events FROM {schema}.bins WHERE model_id = 'foreign'"
            ).fetchall()
    except psycopg.Error:
        return {}
    return {round(hour.timestamp() * 1000) // HOUR_MS: events for hour, events in found}


def test_records_postgres_refuses_are_dead_lettered_and_the_bins_after_them_projected(
    settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    worker = start_worker(settings)
    topics = Topics.for_settings(settings)
    hour = HOUR0 // HOUR_MS
    beyond_bigint = METRICS_VALUE.encode(foreign_bin(hour + 1, 2**70))
    records = [
        (hour, METRICS_VALUE.encode(foreign_bin(hour, 10))),
        (hour + 1, beyond_bigint),
        (hour + 2, METRICS_VALUE.encode(foreign_bin(hour + 2, 20))),
        (hour + 3, b"{not json"),
        (hour + 4, METRICS_VALUE.encode(foreign_bin(hour + 4, 40))),
    ]
    producer = CheckedProducer(settings.bootstrap_servers)
    for record_hour, value in records:
        producer.produce(topics.metrics.name, f"shop/foreign/{record_hour}".encode(), value,
                         partition=0)  # fmt: skip
    producer.flush()

    expected = {hour: 10, hour + 2: 20, hour + 4: 40}
    wait_until(lambda: foreign_hours_in_postgres(settings) == expected, timeout_s=60,
               what="the good bins around the refused ones in PostgreSQL")  # fmt: skip
    letters = {
        int(letter.key.decode().rsplit("/", 1)[1]): letter
        for letter in read_dead_letters(settings.bootstrap_servers, topics.dead_letters.name)
        if letter.source_topic == topics.metrics.name and letter.key is not None
    }
    assert sorted(letters) == [hour + 1, hour + 3]
    refused, unreadable = letters[hour + 1], letters[hour + 3]
    assert refused.value == beyond_bigint
    assert "PostgreSQL refused" in refused.reason
    assert "out of range" in refused.reason
    assert reason_kind(refused.reason) == "postgres_refused"
    assert (refused.source_partition, refused.source_offset) == (0, 1)
    assert unreadable.value == b"{not json"
    assert "not a metrics document" in unreadable.reason
    assert reason_kind(unreadable.reason) == "undecodable"
    assert alive(worker)
