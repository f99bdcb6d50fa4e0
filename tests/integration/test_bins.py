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

from driftline.client import Driftline
from driftline.settings import Settings
from driftline.state.baseline import profile_baseline
from driftline.state.bins import HOUR_MS
from driftline.state.metrics import bin_metrics
from driftline.state.spec import ModelSpec
from driftline.topics.progress import merge_progress
from driftline.topics.waiting import wait_until
from tests.support.deletions import send_deletes
from tests.support.hourly_bins import (
    assert_redis_equals_recomputation,
    bins_in_redis,
    bins_in_topic,
)
from tests.support.models import CHURN_BASELINE, CHURN_SPEC, HOUR0, publish_churn
from tests.support.pipeline import stored_events

pytestmark = pytest.mark.integration


def test_late_labels_bring_performance_and_a_move_re_emits_both_bins(
    settings: Settings, start_worker: Any
) -> None:
    start_worker()
    rng = random.Random(3)
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        rows = [
            {"event_id": f"e{i}", "timestamp": HOUR0 + rng.randrange(2 * HOUR_MS),
             "age": rng.randint(18, 90), "plan": rng.choice(["free", "pro", "team", "gold"]),
             "score": rng.random(), "churned": None}
            for i in range(400)
        ]  # fmt: skip
        publish_churn(client, rows)
        wait_until(
            lambda: sum(b["counts"]["n"] for b in bins_in_redis(settings).values()) == 400,
            timeout_s=30,
            what="400 events in the Redis bins",
        )
        for found in bins_in_redis(settings).values():
            assert "performance" not in found["metrics"]
            assert "drift" in found["metrics"]

        labels = [{"event_id": r["event_id"], "churned": int(r["score"] > 0.6)} for r in rows]
        publish_churn(client, labels, update=True)
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
    spec = ModelSpec.from_dict(CHURN_SPEC)
    baseline = profile_baseline(spec, CHURN_BASELINE)
    for hour, found in bins_in_redis(settings).items():
        assert found["metrics"] == bin_metrics(spec, baseline, found["counts"])
        assert found["metrics"]["performance"]["accuracy"] == pytest.approx(
            _accuracy(settings, hour), abs=1e-12
        )


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
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        rows = [
            {"event_id": f"e{i}", "timestamp": HOUR0 + rng.randrange(4 * HOUR_MS),
             "age": rng.randint(18, 90), "plan": rng.choice(["free", "pro", "team"]),
             "score": rng.random(), "churned": None}
            for i in range(30_000)
        ]  # fmt: skip
        publish_churn(client, rows)
        labels = [
            {"event_id": f"e{i}", "churned": rng.randint(0, 1)}
            | ({"timestamp": HOUR0 + rng.randrange(4 * HOUR_MS)} if i % 10 == 0 else {})
            for i in rng.sample(range(30_000), 12_000)
        ]
        publish_churn(client, labels, update=True)
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


def test_a_bin_whose_events_are_all_deleted_is_removed(
    settings: Settings, start_worker: Any
) -> None:
    start_worker()
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        rows = [
            {"event_id": f"e{i}", "timestamp": HOUR0 + (i % 2) * HOUR_MS + i, "age": 30,
             "plan": "pro", "score": 0.5, "churned": 1}
            for i in range(40)
        ]  # fmt: skip
        publish_churn(client, rows)
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
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        rows = [
            {"event_id": f"e{i}", "timestamp": HOUR0 + (i % 3) * HOUR_MS, "age": 40,
             "plan": "team", "score": 0.9, "churned": None}
            for i in range(30)
        ]  # fmt: skip
        publish_churn(client, rows)
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
