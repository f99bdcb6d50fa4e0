"""Hourly bins end to end: late labels, moved timestamps and crashes, seen in Redis and Kafka."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from driftline.client import Driftline
from driftline.settings import Settings
from driftline.state import exact_json
from driftline.state.baseline import profile_baseline
from driftline.state.bins import HOUR_MS, ContributionRules, bins_of
from driftline.state.events import StoredEvent
from driftline.state.metrics import bin_metrics
from driftline.state.models import ModelSpec
from driftline.topics.progress import GroupProgress, merge_progress
from driftline.topics.reading import read_topic
from driftline.topics.redis_bins import RedisBins
from driftline.topics.registry import Topics
from driftline.topics.waiting import wait_until
from tests.fixtures import stored_events, wait_for_lag_zero
from tests.integration.commands import send_deletes

pytestmark = pytest.mark.integration

SPEC = {
    "project_id": "shop",
    "model_id": "churn",
    "inputs": ["age", "plan"],
    "outputs": ["score"],
    "targets": ["churned"],
    "metadata": ["note"],
    "task": "binary_classification",
    "column_types": {"age": "int", "plan": "category", "score": "float"},
}
HOUR0 = 490_000 * HOUR_MS  # an hour in 2025
BASELINE = [
    {"age": 18 + i % 60, "plan": ["free", "pro", "team"][i % 3], "score": (i % 100) / 100}
    for i in range(500)
]


def redis_bins(settings: Settings) -> RedisBins:
    return RedisBins(redis.Redis.from_url(settings.redis), settings.topic_prefix)


def bins_in_redis(settings: Settings) -> dict[int, dict[str, Any]]:
    found = redis_bins(settings).read_range("shop/churn", 0, 2**62)
    return {b["hour_start_ms"] // HOUR_MS: b for b in found}


def bins_in_topic(settings: Settings) -> dict[int, dict[str, Any] | None]:
    """The metrics topic as compaction will leave it: the last value per bin."""
    latest: dict[int, dict[str, Any] | None] = {}
    topic = Topics.for_settings(settings).metrics.name
    for message in read_topic(settings.bootstrap_servers, topic):
        hour = int(message.key().decode().rsplit("/", 1)[1])
        latest[hour] = None if message.value() is None else exact_json.loads(message.value())
    return latest


def recomputed(settings: Settings) -> dict[int, dict[str, Any]]:
    """Batch recomputation from the final stored events, independent of the agents."""
    spec = ModelSpec.from_dict(SPEC)
    rules = ContributionRules(spec, profile_baseline(spec, BASELINE))
    events = [
        ("shop/churn", StoredEvent(event_id, ts, columns, 0, 0))
        for event_id, (ts, columns) in stored_events(settings).items()
    ]
    bins = bins_of({"shop/churn": rules}, events)
    # Arrival times are not part of this comparison: drop the ingest-delay sum.
    return {
        hour: {k: v for k, v in counters.items() if k != "delay_ms"}
        for (_, hour), counters in bins.items()
    }


def publish(client: Driftline, rows: list[dict[str, Any]], update: bool = False) -> None:
    client.publish_events_batch("shop", "churn", rows, update_event=update)


def test_late_labels_bring_performance_and_a_move_re_emits_both_bins(
    settings: Settings, start_worker: Any
) -> None:
    start_worker()
    rng = random.Random(3)
    with Driftline(settings) as client:
        client.register_model(SPEC, BASELINE)
        rows = [
            {"event_id": f"e{i}", "timestamp": HOUR0 + rng.randrange(2 * HOUR_MS),
             "age": rng.randint(18, 90), "plan": rng.choice(["free", "pro", "team", "gold"]),
             "score": rng.random(), "churned": None}
            for i in range(400)
        ]  # fmt: skip
        publish(client, rows)
        wait_until(
            lambda: sum(b["counts"]["n"] for b in bins_in_redis(settings).values()) == 400,
            timeout_s=30,
            what="400 events in the Redis bins",
        )
        for found in bins_in_redis(settings).values():
            assert "performance" not in found["metrics"]
            assert "drift" in found["metrics"]

        labels = [{"event_id": r["event_id"], "churned": int(r["score"] > 0.6)} for r in rows]
        publish(client, labels, update=True)
        wait_until(
            lambda: all("performance" in b["metrics"] for b in bins_in_redis(settings).values()),
            timeout_s=30,
            what="performance metrics after the labels",
        )
        versions = {hour: b["version"] for hour, b in bins_in_redis(settings).items()}
        moved = next(r for r in rows if r["timestamp"] < HOUR0 + HOUR_MS)
        client.publish_event(
            "shop", "churn", {}, event_id=moved["event_id"], update_event=True,
            event_timestamp=HOUR0 + HOUR_MS + 5,
        )  # fmt: skip
        wait_until(
            lambda: all(
                bins_in_redis(settings)[hour]["version"] > versions[hour] for hour in versions
            ),
            timeout_s=30,
            what="both bins re-emitted after the move",
        )
    assert_redis_equals_recomputation(settings)
    in_topic = bins_in_topic(settings)
    assert {hour: b["counts"] for hour, b in in_topic.items() if b} == _counts_with_delay(
        bins_in_redis(settings)
    )
    spec = ModelSpec.from_dict(SPEC)
    baseline = profile_baseline(spec, BASELINE)
    for hour, found in bins_in_redis(settings).items():
        assert found["metrics"] == bin_metrics(spec, baseline, found["counts"])
        assert found["metrics"]["performance"]["accuracy"] == pytest.approx(
            _accuracy(settings, hour), abs=1e-12
        )


def _counts(bins: dict[int, dict[str, Any]]) -> dict[int, dict[str, int]]:
    return {
        hour: {k: v for k, v in b["counts"].items() if k != "delay_ms"} for hour, b in bins.items()
    }


def _counts_with_delay(bins: dict[int, dict[str, Any]]) -> dict[int, dict[str, int]]:
    return {hour: b["counts"] for hour, b in bins.items()}


def _accuracy(settings: Settings, hour: int) -> float:
    events = [columns for ts, columns in stored_events(settings).values() if ts // HOUR_MS == hour]
    right = sum((c["score"] >= 0.5) == (c["churned"] == 1) for c in events)
    return right / len(events)


def test_bins_equal_the_batch_recomputation_after_a_sigkill_mid_stream(
    settings: Settings, start_worker: Any
) -> None:
    rng = random.Random(5)
    with Driftline(settings) as client:
        client.register_model(SPEC, BASELINE)
        rows = [
            {"event_id": f"e{i}", "timestamp": HOUR0 + rng.randrange(4 * HOUR_MS),
             "age": rng.randint(18, 90), "plan": rng.choice(["free", "pro", "team"]),
             "score": rng.random(), "churned": None}
            for i in range(30_000)
        ]  # fmt: skip
        publish(client, rows)
        labels = [
            {"event_id": f"e{i}", "churned": rng.randint(0, 1)}
            | ({"timestamp": HOUR0 + rng.randrange(4 * HOUR_MS)} if i % 10 == 0 else {})
            for i in rng.sample(range(30_000), 12_000)
        ]
        publish(client, labels, update=True)
        doomed = [f"e{i}" for i in range(0, 30_000, 17)]
        send_deletes(settings, "shop", "churn", doomed, update_metrics=True)

    # Small batches: the worker merges ~50k events/s and would finish before the kill.
    first = start_worker(settings.with_overrides(batch_max_messages=100))
    progress = merge_progress(settings)
    try:
        wait_until(lambda: progress.committed() > 0, timeout_s=60, what="progress",
                   interval_s=0.02)  # fmt: skip
        first.kill()
        assert progress.lag() > 0, "the worker finished before it could be killed"
    finally:
        progress.close()
    start_worker()
    assert_redis_equals_recomputation(settings)


def assert_redis_equals_recomputation(settings: Settings) -> None:
    """Once merged, the Redis bins settle on the batch recomputation from the final events."""
    wait_for_lag_zero(settings)
    expected = recomputed(settings)
    try:
        wait_until(lambda: _counts(bins_in_redis(settings)) == expected, timeout_s=30,
                   what="Redis bins to equal the batch recomputation")  # fmt: skip
    except TimeoutError:
        assert _counts(bins_in_redis(settings)) == expected, pipeline_state(settings)


def pipeline_state(settings: Settings) -> str:
    """Where the bins pipeline stands, for a failure message."""
    topics = Topics.for_settings(settings)
    stages = {
        "bins": (topics.bins_group, topics.bin_partials),
        "serving": (topics.serving_group, topics.metrics),
    }
    lines = []
    for name, (group, topic) in stages.items():
        progress = GroupProgress(settings.bootstrap_servers, group, topic.name, topic.partitions)
        try:
            lines.append(f"{name}: end {progress.end()}, committed {progress.committed()}")
        finally:
            progress.close()
    last = {
        hour: None if b is None else b["counts"]["n"] for hour, b in bins_in_topic(settings).items()
    }
    lines.append(f"metrics topic, last events count per hour: {last}")
    return "; ".join(lines)


def test_a_bin_whose_events_are_all_deleted_is_removed(
    settings: Settings, start_worker: Any
) -> None:
    start_worker()
    with Driftline(settings) as client:
        client.register_model(SPEC, BASELINE)
        rows = [
            {"event_id": f"e{i}", "timestamp": HOUR0 + (i % 2) * HOUR_MS + i, "age": 30,
             "plan": "pro", "score": 0.5, "churned": 1}
            for i in range(40)
        ]  # fmt: skip
        publish(client, rows)
        wait_until(lambda: sorted(bins_in_redis(settings)) == [490_000, 490_001], timeout_s=30,
                   what="two bins in Redis")  # fmt: skip
        first_hour = [row["event_id"] for i, row in enumerate(rows) if i % 2 == 0]
        send_deletes(settings, "shop", "churn", first_hour, update_metrics=True)
        wait_until(lambda: sorted(bins_in_redis(settings)) == [490_001], timeout_s=30,
                   what="the emptied bin to leave Redis")  # fmt: skip
    assert bins_in_topic(settings)[490_000] is None  # a tombstone, for compaction to drop
    assert bins_in_redis(settings)[490_001]["counts"]["n"] == 20


def test_bins_are_queried_by_time_range_over_http_and_the_cli(
    settings: Settings, start_worker: Any, api_settings: Settings
) -> None:
    start_worker()
    with Driftline(api_settings) as client:
        client.register_model(SPEC, BASELINE)
        rows = [
            {"event_id": f"e{i}", "timestamp": HOUR0 + (i % 3) * HOUR_MS, "age": 40,
             "plan": "team", "score": 0.9, "churned": None}
            for i in range(30)
        ]  # fmt: skip
        publish(client, rows)
        wait_until(
            lambda: [b["counts"]["n"] for b in bins_in_redis(settings).values()] == [10] * 3,
            timeout_s=30,
            what="three bins of ten events",
        )
        middle = client.get_metrics("shop", "churn", HOUR0 + HOUR_MS, HOUR0 + 2 * HOUR_MS)
        assert [b["hour_start_ms"] for b in middle] == [HOUR0 + HOUR_MS]

    def status(query: str) -> tuple[int, dict[str, Any]]:
        url = f"{api_settings.api_url}/v1/metrics?project_id=shop&model_id=churn&{query}"
        headers = {"Authorization": f"Bearer {api_settings.api_token}"}
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    start = datetime.fromtimestamp(HOUR0 / 1000, UTC).isoformat()
    code, body = status(f"start={urllib.parse.quote(start)}&end={HOUR0 + 3 * HOUR_MS}")
    assert code == 200
    assert len(body["bins"]) == 3
    assert status("start=yesterday&end=1")[0] == 400
    assert "has no time zone" in status("start=2025-01-01T00:00&end=1")[1]["error"]
    assert "before end" in status(f"start={HOUR0}&end={HOUR0}")[1]["error"]

    cli = subprocess.run(
        [sys.executable, "-m", "driftline.cli", "metrics", "shop/churn",
         "--start", str(HOUR0), "--end", str(HOUR0 + HOUR_MS)],
        env={**os.environ, **api_settings.to_env()}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    (only,) = json.loads(cli.stdout)
    assert only["counts"]["n"] == 10
    assert "performance" not in only["metrics"]
