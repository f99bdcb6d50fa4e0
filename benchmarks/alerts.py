"""Alerts under load: label-to-webhook latency, and ingestion with a hanging receiver.

    python benchmarks/alerts.py [--probes 100] [--background-rate 10000] [--events 150000]

The model of ``benchmarks/metrics.py`` (20 float inputs, binary, a baseline).

Part 1, latency: one rule fires when an hour bin has a labelled event (``labelled``
greater than 0), sent to a local webhook receiver. Each probe is an event alone in a quiet
hour of its own; with background inserts flowing at ``--background-rate`` (about half
of one worker's capacity here: ``benchmarks/metrics.py`` measures it), the probe's label
is published and the time until the webhook receives that hour's alert is recorded.

Part 2, a hanging receiver: the same events are ingested twice, interleaved, by a fresh
worker each time, with rules that fire on every hour and every column (drift of each of
the 21 columns, traffic) and notify a webhook that answers at once, or one that accepts
the connection and never answers. The figure is the ratio of the two throughputs,
measured in this one run (merge + bins + Redis, ``benchmarks.metrics.throughput``).

Uses KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set, else starts the embedded broker and
Redis in a temporary directory.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ingest import infrastructure
from benchmarks.metrics import (
    MODEL,
    SPEC,
    _wait_for,
    background_load,
    baseline,
    event_value,
    label_value,
    p50_p99,
    throughput,
)
from driftline.client import Driftline
from driftline.settings import Settings
from driftline.stack.kafka import free_port
from driftline.stack.worker import WorkerProcess
from driftline.state.alert_rules import AlertRule
from driftline.state.bins import HOUR_MS
from driftline.state.spec import ModelSpec
from driftline.topics.alert_rules import publish_rule
from driftline.topics.catalog import Topics
from driftline.topics.messages import ingest_key
from driftline.topics.producer import CheckedProducer
from driftline.topics.redis_bins import RedisBins
from tests.support.webhooks import Receiver

SECRET = "bench-secret"


def rule(rule_id: str, metric: str, columns: Any, url: str) -> dict[str, Any]:
    project_id, model_id = MODEL.split("/")
    return {"rule_id": rule_id, "project_id": project_id, "model_id": model_id,
            "metric": metric, "columns": columns, "comparison": {"kind": "absolute"},
            "direction": "greater", "critical": 0, "bin": "hour",
            "channels": [{"type": "webhook", "url": url, "secret": SECRET}]}  # fmt: skip


def prepared(settings: Settings, name: str, rules: list[dict[str, Any]]) -> Settings:
    """A run of its own: fresh topics and state, the model and the rules registered."""
    run = settings.with_overrides(
        topic_prefix=f"bench{uuid.uuid4().hex[:8]}", data_dir=settings.data_dir / name
    )
    with Driftline(run) as client:
        client.register_model(SPEC, baseline(random.Random(0)))
    producer = CheckedProducer(run.bootstrap_servers)
    spec, topic = ModelSpec.from_dict(SPEC), Topics.for_settings(run).alert_rules.name
    for raw in rules:
        publish_rule(producer, topic, AlertRule.from_dict(raw, spec))
    return run


def latency(
    settings: Settings, probes: int, rate: int, workdir: Path, receiver: Receiver
) -> list[float]:
    """Seconds from publishing a probe's label to its alert reaching the webhook."""
    rng = random.Random(2)
    producer = CheckedProducer(settings.bootstrap_servers)
    topic = Topics.for_settings(settings).ingest.name
    first_hour = int(time.time() * 1000) // HOUR_MS - 100 - probes
    hour_keys = {}
    for i in range(probes):
        hour = first_hour + i
        producer.produce(topic, ingest_key("bench", "wide", f"probe{i}"),
                         event_value(rng, f"probe{i}", hour * HOUR_MS))  # fmt: skip
        hour_keys[i] = f"{MODEL}/labelled/hour/{hour}/"
    producer.flush()
    bins = RedisBins(redis.Redis.from_url(settings.redis), settings.topic_prefix)
    worker = WorkerProcess(settings, workdir / "worker-alert-latency.log").start()
    try:
        probe_range = (first_hour * HOUR_MS, (first_hour + probes) * HOUR_MS)
        _wait_for(lambda: len(bins.read_range(MODEL, *probe_range)) == probes, 120)
        timings = []
        with background_load(settings, rate):
            for i in range(probes):
                sent = time.perf_counter()
                producer.produce(topic, ingest_key("bench", "wide", f"probe{i}"),
                                 label_value(rng, f"probe{i}"))  # fmt: skip
                producer.flush()
                _wait_for(partial(notified, receiver, hour_keys[i]), 30, interval=0.002)
                timings.append(first_arrival(receiver, hour_keys[i]) - sent)
                time.sleep(rng.uniform(0.2, 0.4))
        return timings
    finally:
        worker.stop()


def arrivals(receiver: Receiver, alert_key: str) -> list[float]:
    """When the receiver took each notification of the alert (its key)."""
    return [d.at for d in receiver.taken() if d.json()["key"] == alert_key]


def notified(receiver: Receiver, alert_key: str) -> bool:
    return bool(arrivals(receiver, alert_key))


def first_arrival(receiver: Receiver, alert_key: str) -> float:
    return min(arrivals(receiver, alert_key))


def firing_rules(url: str) -> list[dict[str, Any]]:
    """Rules that fire on every hour bin: drift of every column, and traffic."""
    return [rule("drift", "psi", "all", url), rule("traffic", "events", None, url)]


def hanging_vs_answering(
    settings: Settings,
    events: int,
    rounds: int,
    workdir: Path,
    answering: Receiver,
    hanging: Receiver,
) -> None:
    """Part 2: the same ingestion, rules firing everywhere, with either receiver."""
    rates: dict[str, list[float]] = {"answering": [], "hanging": []}
    for number in range(rounds):
        for name, receiver in (("answering", answering), ("hanging", hanging)):
            run = prepared(settings, f"{name}-{number}", firing_rules(receiver.url))
            _, end_to_end, _ = throughput(run, events, workdir)
            rates[name].append(end_to_end)
            print(f"round {number + 1}, {name:9} receiver: {end_to_end:9,.0f} events/s "
                  f"({len(receiver.taken())} webhook requests so far)")  # fmt: skip
    answered, hung = (statistics.median(rates[n]) for n in ("answering", "hanging"))
    print(
        f"ingestion with a hanging receiver: {hung / answered:.2f}x the rate with an "
        f"answering one ({hung:,.0f} vs {answered:,.0f} events/s, medians of {rounds})"
    )


@contextmanager
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    with Receiver() as answering, Receiver(hang=True) as hanging:
        yield answering, hanging


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--background-rate", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
        workdir = Path(tmp)
        base = Settings.from_env().with_overrides(
            ingest_partitions=args.partitions, worker_port=free_port(), data_dir=workdir / "state"
        )
        with infrastructure(base, workdir) as settings, receivers() as (answering, hanging):
            print("model: 20 float inputs, binary, baseline of 2000 rows; 1 worker, "
                  f"{args.partitions} partitions")  # fmt: skip
            if args.rounds:
                hanging_vs_answering(settings, args.events, args.rounds, workdir,
                                     answering, hanging)  # fmt: skip
            if not args.probes:
                return
            run = prepared(settings, "latency", [rule("labelled", "labelled", None, answering.url)])
            found = latency(run, args.probes, args.background_rate, workdir, answering)
            timings = sorted(found)
    p50, p99 = p50_p99(timings)
    print(f"label -> webhook:  p50 {p50 * 1000:6.0f} ms, p99 {p99 * 1000:6.0f} ms, "
          f"max {timings[-1] * 1000:6.0f} ms ({len(timings)} probes, "
          f"{args.background_rate}/s background inserts)")  # fmt: skip
    print(f"slowest probes:    {', '.join(f'{t * 1000:.0f}' for t in timings[-5:])} ms")
    print(f"probes over 1 s:   {[(i, round(t, 2)) for i, t in enumerate(found) if t > 1]}")


if __name__ == "__main__":
    main()
