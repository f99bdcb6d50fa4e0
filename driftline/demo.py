"""The quick-start demo: a fraud model serves traffic, its labels arrive later.

Starts the embedded stack, a worker and the REST API, registers a model, publishes a
few hours of events without ground truth (and a few malformed messages), publishes the
labels after a delay, then prints what Driftline holds: events before and after their
labels, the time from a label to its visible effect, the per-model counters and the dead
letters; last it deletes the oldest hour through the API and shows its bin go.
"""

from __future__ import annotations

import random
import time
import uuid
import warnings
from datetime import UTC, datetime
from typing import Any

import click

from driftline import stack
from driftline.api.auth import create_token
from driftline.client import Driftline, DroppedFieldsWarning
from driftline.settings import Settings
from driftline.stack.api import ApiProcess
from driftline.stack.kafka import free_port
from driftline.stack.worker import WorkerProcess
from driftline.state.bins import HOUR_MS
from driftline.topics.catalog import Topics
from driftline.topics.dead_letters import read_dead_letters
from driftline.topics.messages import encode_ingest, ingest_key
from driftline.topics.producer import CheckedProducer
from driftline.topics.progress import merge_progress

PROJECT, MODEL = "demo", "fraud"
SPEC = {
    "project_id": PROJECT,
    "model_id": MODEL,
    "inputs": ["age", "amount", "country"],
    "outputs": ["score"],
    "targets": ["is_fraud"],
    "metadata": ["channel"],
    "task": "binary_classification",
}


def run_demo(settings: Settings, events: int, label_delay_s: float) -> None:
    endpoints = stack.up(settings)
    settings = settings.with_overrides(
        kafka_bootstrap_servers=endpoints.bootstrap_servers,
        redis_url=endpoints.redis_url,
        postgres_url=endpoints.postgres_url,
        topic_prefix=f"demo-{uuid.uuid4().hex[:6]}",
        data_dir=settings.home / "demo-worker",
        worker_port=free_port(),
        api_port=free_port(),
        api_metrics_port=free_port(),
        api_tokens_file=settings.home / "demo-api-tokens.json",
    )
    settings = settings.with_overrides(
        api_url=None, api_token=create_token(settings.api_tokens_file, [PROJECT], name="demo")
    )
    _say(f"Kafka {endpoints.bootstrap_servers}, Redis {endpoints.redis_url}")
    worker = WorkerProcess(settings, settings.home / "demo-worker.log").start()
    _say(f"worker ready at {worker.url} (log: {worker.log_path})")
    api = ApiProcess(settings, settings.home / "demo-api.log").start()
    _say(f"REST API ready at {api.url} (OpenAPI: {api.url}/openapi.yaml)")
    try:
        with Driftline(settings) as client:
            client.register_model(SPEC, _baseline())
            _say(f"registered model {PROJECT}/{MODEL} with a baseline of 2000 rows")
            rows = _traffic(events)
            client.publish_events_batch(PROJECT, MODEL, rows, progress=True)
            _publish_malformed(settings, client)
            _wait_merged(settings)
            sample = [row["event_id"] for row in rows[:3]]
            _show_events(client, sample, "before labels")
            _show_bins(client, "before labels: no performance metrics yet")
            _say(f"labels arrive {label_delay_s:.0f}s later ...")
            time.sleep(label_delay_s)
            _publish_labels(client, rows)
            _wait_merged(settings)
            _show_events(client, sample, "after labels")
            _show_bins(client, "after labels: performance appears")
            _show_label_latency(client, rows[0]["event_id"])
            _show_counters(client)
            _show_dead_letters(settings)
            _delete_oldest_hour(client, rows)
    finally:
        api.stop()
        worker.stop()
    _say("done. The stack keeps running: `driftline stack down` stops it.")


def _baseline() -> list[dict[str, Any]]:
    """Pre-production data: amounts a little lower than production's, so drift shows."""
    rng = random.Random(1)
    return [
        {
            "age": rng.randint(18, 85),
            "amount": round(rng.lognormvariate(3.2, 1.0), 2),
            "country": rng.choice(["fr", "de", "es"]),
            "score": round(rng.random(), 3),
        }
        for _ in range(2000)
    ]


def _traffic(events: int) -> list[dict[str, Any]]:
    rng = random.Random(42)
    now = int(time.time() * 1000)
    rows = []
    for i in range(events):
        amount = round(rng.lognormvariate(3.5, 1.0), 2)
        rows.append(
            {
                "event_id": f"tx-{i:05d}",
                "timestamp": now - rng.randrange(6 * HOUR_MS),
                "age": rng.randint(18, 85),
                "amount": amount,
                "country": rng.choice(["fr", "de", "es", "us"]),
                "score": round(min(1.0, amount / 400 + rng.random() * 0.3), 3),
                "is_fraud": None,  # ground truth is not known at inference time
                "channel": "web",
            }
        )
    return rows


def _publish_malformed(settings: Settings, client: Driftline) -> None:
    producer = CheckedProducer(settings.bootstrap_servers)
    topic = client.topics.ingest.name
    producer.produce(topic, b"demo/fraud/bad-1", b"{this is not json")
    producer.produce(
        topic,
        ingest_key(PROJECT, "no-such-model", "bad-2"),
        encode_ingest("insert", PROJECT, "no-such-model", "bad-2", {"age": 3}),
    )
    producer.flush()
    _say("published 2 malformed messages (they go to the dead-letter topic)")


def _publish_labels(client: Driftline, rows: list[dict[str, Any]]) -> None:
    rng = random.Random(7)
    labels = [
        {"event_id": row["event_id"], "is_fraud": int(rng.random() < row["score"])}
        for row in rows
        if rng.random() < 0.8
    ]
    labels[0]["amount"] = 1.0  # an input: not updatable, dropped and counted
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DroppedFieldsWarning)
        client.publish_events_batch(PROJECT, MODEL, labels, update_event=True, progress=True)
    for warning in caught:
        _say(f"client warning: {warning.message}")
    _say(f"published {len(labels)} labels for {len(rows)} events")


def _wait_merged(settings: Settings) -> None:
    progress = merge_progress(settings)
    try:
        progress.wait_caught_up(timeout_s=60)
    finally:
        progress.close()


def _show_events(client: Driftline, event_ids: list[str], when: str) -> None:
    click.secho(f"\nStored events {when}:", bold=True)
    click.echo(f"  {'event_id':<10} {'time (UTC)':<17} {'amount':>8} {'score':>6} is_fraud")
    for event_id in event_ids:
        found = client.get_event(PROJECT, MODEL, event_id)
        if found is None:
            click.echo(f"  {event_id:<10} (not found)")
            continue
        event = found["event"]
        at = datetime.fromtimestamp(found["event_timestamp"] / 1000, UTC)
        click.echo(
            f"  {event_id:<10} {at:%Y-%m-%d %H:%M} {event['amount']:>8} "
            f"{event['score']:>6} {event['is_fraud']}"
        )


def _show_bins(client: Driftline, when: str) -> None:
    now = int(time.time() * 1000)
    bins = _settled_bins(client, now - 7 * HOUR_MS, now + HOUR_MS)
    click.secho(f"\nHourly bins, {when}:", bold=True)
    click.echo(
        f"  {'hour (UTC)':<17} {'events':>6} {'labelled':>8} {'JS(amount)':>10} "
        f"{'PSI(amount)':>11} {'accuracy':>8} {'auc':>6}"
    )
    for found in bins:
        hour = datetime.fromtimestamp(found["hour_start_ms"] / 1000, UTC)
        metrics = found["metrics"]
        drift = metrics.get("drift", {}).get("amount", {})
        performance = metrics.get("performance")
        accuracy = f"{performance['accuracy']:.3f}" if performance else "-"
        auc = f"{performance['auc']:.3f}" if performance and "auc" in performance else "-"
        click.echo(
            f"  {hour:%Y-%m-%d %H:%M} {metrics['traffic']['events']:>6} "
            f"{metrics['traffic']['labelled']:>8} {drift.get('js_distance', 0):>10.3f} "
            f"{drift.get('psi', 0):>11.3f} {accuracy:>8} {auc:>6}"
        )


def _settled_bins(client: Driftline, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """The bins once two reads in a row agree (re-emission is coalesced over ~0.5 s)."""
    previous: list[dict[str, Any]] | None = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        bins = client.get_metrics(PROJECT, MODEL, start_ms, end_ms)
        versions = [b["version"] for b in bins]
        if previous is not None and versions == [b["version"] for b in previous] and bins:
            return bins
        previous = bins
        time.sleep(0.7)
    return previous or []


def _show_label_latency(client: Driftline, event_id: str) -> None:
    found = client.get_event(PROJECT, MODEL, event_id) or {}
    hour_ms = found["event_timestamp"] // HOUR_MS * HOUR_MS
    (before,) = client.get_metrics(PROJECT, MODEL, hour_ms, hour_ms + HOUR_MS)
    flipped = 1 - (found["event"].get("is_fraud") or 0)
    started = time.perf_counter()
    client.publish_event(PROJECT, MODEL, {"is_fraud": flipped}, event_id=event_id,
                         update_event=True)  # fmt: skip
    stored_ms = bin_ms = None
    while stored_ms is None or bin_ms is None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        event = client.get_event(PROJECT, MODEL, event_id) or {}
        if stored_ms is None and event.get("event", {}).get("is_fraud") == flipped:
            stored_ms = elapsed_ms
        (now,) = client.get_metrics(PROJECT, MODEL, hour_ms, hour_ms + HOUR_MS)
        if bin_ms is None and now["version"] > before["version"]:
            bin_ms = elapsed_ms
        time.sleep(0.002)
    _say(
        f"one more label: visible in the events table after {stored_ms:.0f} ms, "
        f"its hour bin re-emitted to Redis after {bin_ms:.0f} ms"
    )


def _show_counters(client: Driftline) -> None:
    counters = client.get_counters(PROJECT, MODEL)
    click.secho(f"\nCounters of {PROJECT}/{MODEL} (GET /v1/models/.../counters):", bold=True)
    click.echo(f"  dead letters:   {counters['dead_letters']}")
    click.echo(f"  dropped fields: {counters['dropped_fields']}")
    click.echo(f"  parked updates: {counters['parked_updates']}")


def _show_dead_letters(settings: Settings) -> None:
    click.secho("\nDead letters (original bytes kept, reason in headers):", bold=True)
    topic = Topics.for_settings(settings).dead_letters.name
    for letter in read_dead_letters(settings.bootstrap_servers, topic):
        click.echo(f"  {(letter.key or b'').decode(errors='replace'):<28} {letter.reason}")


def _delete_oldest_hour(client: Driftline, rows: list[dict[str, Any]]) -> None:
    """A time-range deletion through the REST API, retracting the hour from its bin."""
    hour_ms = min(row["timestamp"] for row in rows) // HOUR_MS * HOUR_MS
    start = datetime.fromtimestamp(hour_ms / 1000, UTC)
    end = datetime.fromtimestamp((hour_ms + HOUR_MS) / 1000, UTC)
    click.secho(f"\nDeleting {start:%Y-%m-%d %H:00} to {end:%H:00} UTC through the API "
                "(update_metrics=true):", bold=True)  # fmt: skip
    status = client.delete_events(
        PROJECT, MODEL, time_range=(f"{start:%Y-%m-%d %H:00:00}", f"{end:%Y-%m-%d %H:00:00}"),
        update_metrics=True,
    )  # fmt: skip
    assert isinstance(status, dict)
    _say(f"deletion {status['deletion_id']}: {status['status']}, {status['deleted']} deleted")
    left = client.get_events_slice(PROJECT, MODEL, start=hour_ms, end=hour_ms + HOUR_MS)
    _say(f"events left in that hour (slice API): {len(left)}")
    _show_bins(client, "after the deletion: the oldest hour is gone")


def _say(message: str) -> None:
    click.echo(f"driftline demo: {message}")
