"""The PostgreSQL projection on the real broker and PostgreSQL: after a stream with late
labels, events moved to another hour and deletions, every row equals the newest document
of its key in the metrics topic (and Redis holds the same documents), an emptied bin has
no rows, the alerts equal the alerts topic; and after DROP SCHEMA the same rows come
back by themselves. A batch of 1,000 bins is written (and timed) through the sink."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import psycopg
import pytest
from confluent_kafka import Message

from driftline.agents.postgres_projection import BinRows, PostgresSink
from driftline.client import Driftline
from driftline.settings import Settings
from driftline.stack.worker import WorkerProcess
from driftline.state.alert_rules import AlertRule
from driftline.state.bins import HOUR_MS
from driftline.topics.alert_rules import publish_rule
from driftline.topics.catalog import Topics
from driftline.topics.metric_bins import METRICS_VALUE
from driftline.topics.postgres_tables import schema_name
from driftline.topics.producer import CheckedProducer
from driftline.topics.waiting import wait_until
from tests.support.alert_rules import drift_rule
from tests.support.alerts import current_alerts
from tests.support.deletions import send_deletes
from tests.support.hourly_bins import bins_in_topic, redis_matches_topic
from tests.support.models import CHURN_BASELINE, CHURN_MODEL, CHURN_SPEC, HOUR0
from tests.support.pipeline import wait_for_lag_zero
from tests.support.postgres import (
    alerts_match_topic,
    bins_in_postgres,
    expected_bin_rows,
    postgres_matches_topic,
)

pytestmark = pytest.mark.integration

EVENTS = 300
HOURS = 4  # event i falls in hour i % HOURS after HOUR0


def rows(count: int) -> list[dict[str, Any]]:
    return [
        {"event_id": f"e{i}", "timestamp": HOUR0 + (i % HOURS) * HOUR_MS + i,
         "age": 20 + i % 50, "plan": ["free", "pro"][i % 2], "score": (i % 10) / 10,
         "churned": None}
        for i in range(count)
    ]  # fmt: skip


def events_rule() -> AlertRule:
    """Critical above 70 events an hour: the stream's 75 an hour fire it."""
    raw = drift_rule(rule_id="busy", metric="events", columns=None, critical=70, warning=60)
    return AlertRule.from_dict(raw, CHURN_MODEL)


def converged(settings: Settings) -> bool:
    return postgres_matches_topic(settings) and alerts_match_topic(settings)


def test_postgres_rows_equal_the_topics_after_labels_moves_and_deletions_and_after_a_drop(
    settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    topics = Topics.for_settings(settings)
    start_worker(settings)
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        publish_rule(CheckedProducer(settings.bootstrap_servers), topics.alert_rules.name,
                     events_rule())  # fmt: skip
        client.publish_events_batch("shop", "churn", rows(EVENTS))
        wait_for_lag_zero(settings)
        late_labels = [{"event_id": f"e{i}", "churned": i % 2} for i in range(0, EVENTS, 3)]
        client.publish_events_batch("shop", "churn", late_labels, update_event=True)
        # Every event of the fourth hour moves two hours on: that bin empties.
        moved = [{"event_id": f"e{i}", "timestamp": HOUR0 + 5 * HOUR_MS + i}
                 for i in range(3, EVENTS, HOURS)]  # fmt: skip
        client.publish_events_batch("shop", "churn", moved, update_event=True)
    deleted = [f"e{i}" for i in range(0, 200, HOURS)]  # 50 of the first hour's 75
    send_deletes(settings, "shop", "churn", deleted, update_metrics=True)
    wait_for_lag_zero(settings)

    first_hour, emptied = HOUR0 // HOUR_MS, HOUR0 // HOUR_MS + 3
    wait_until(
        lambda: (in_topic := bins_in_topic(settings)).get(emptied, 0) is None
        and in_topic[first_hour] is not None
        and in_topic[first_hour]["metrics"]["traffic"]["events"] == 25,
        timeout_s=60, what="the deletions and moves in the metrics topic",
    )  # fmt: skip
    wait_until(lambda: len(current_alerts(settings)) >= 3, timeout_s=60,
               what="the busy hours' alerts")  # fmt: skip
    wait_until(lambda: converged(settings), timeout_s=60, what="PostgreSQL to equal the topics")
    in_postgres = bins_in_postgres(settings)
    assert sorted(in_postgres) == [(first_hour + h) * HOUR_MS for h in (0, 1, 2, 5)]
    assert in_postgres[HOUR0] == expected_bin_rows(bins_in_topic(settings)[first_hour] or {})
    assert in_postgres[HOUR0 + HOUR_MS][1], "a bin's metrics rows"
    wait_until(lambda: redis_matches_topic(settings), timeout_s=30, what="Redis to equal it too")

    with psycopg.connect(settings.postgres, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA "{schema_name(settings.topic_prefix)}" CASCADE')
    wait_until(lambda: converged(settings), timeout_s=60,
               what="the same rows back after DROP SCHEMA")  # fmt: skip
    assert bins_in_postgres(settings) == in_postgres


BINARY_METRICS = ("accuracy", "precision", "recall", "f1", "false_positive_rate", "log_loss")


def test_a_batch_of_a_thousand_bins_is_one_quick_transaction(settings: Settings) -> None:
    """The sink alone, on the churn model's documents (23 metrics each): the figure the
    projection has to keep up with the bins stage (its batches are at most 1,000)."""
    documents = [
        {"project_id": "shop", "model_id": "churn", "hour_start_ms": HOUR0 + h * HOUR_MS,
         "hour_end_ms": HOUR0 + (h + 1) * HOUR_MS, "version": 1, "emitted_at_ms": HOUR0,
         "counts": {"n": 100, "labelled": 40},
         "metrics": {
             "traffic": {"events": 100, "labelled": 40, "mean_ingest_delay_ms": 1200.5},
             "integrity": {c: {"missing": 1, "type_mismatch": 0, "range_violation": 2}
                           for c in ("age", "plan", "score", "churned")},
             "drift": {c: {"js_distance": 0.1, "psi": 0.2} for c in ("age", "plan", "score")},
             "performance": dict.fromkeys(BINARY_METRICS, 0.5),
         }}
        for h in range(1000)
    ]  # fmt: skip
    messages = [
        Message(topic="m", partition=0, offset=offset, key=f"shop/churn/{h}".encode(),
                value=METRICS_VALUE.encode(document))
        for offset, (h, document) in enumerate(enumerate(documents))
    ]  # fmt: skip
    sink = PostgresSink(settings.postgres, schema_name(settings.topic_prefix), "m", BinRows())
    sink.markers([0])
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        sink.write(cast("list[Message]", messages), {0: len(messages)})
        timings.append(time.perf_counter() - started)
    print(f"1,000 bins (24,000 rows): {[round(t, 3) for t in timings]} s")
    assert min(timings) < 2.0
    with psycopg.connect(settings.postgres) as connection:
        schema = schema_name(settings.topic_prefix)
        counted = connection.execute(f"SELECT count(*) FROM {schema}.bin_metrics").fetchone()
    assert counted == (1000 * (12 + 6 + 6),)
