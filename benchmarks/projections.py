"""What the projections cost merge and bins, and how soon an emitted bin is a PostgreSQL row.

    python benchmarks/projections.py [--events 200000] [--seconds 60] [--rounds 2]

Part 1, in one run: the same events (a third of the messages label updates) are merged
and binned by a worker with both projections (Redis and PostgreSQL) on and by one with
both off, ``--rounds`` times, which runs first alternating. Each rate runs from the merge
stage's first committed batch until the metrics topic (read by this script) holds every event and
label: merge + bins, with the projections competing for the same process and cores or
not. Part 2, at half the measured rate of background inserts over a few hours (their
bins re-emitted every ``DRIFTLINE_EMIT_INTERVAL_S``), polls PostgreSQL every few
milliseconds and times each new bin version from its ``emitted_at`` (the bins stage's
clock, this machine's) to the poll that first sees it. Uses KAFKA_BOOTSTRAP_SERVERS /
REDIS_URL / DRIFTLINE_POSTGRES_URL when set, else starts the embedded servers in a
temporary directory (``benchmarks.ingest.infrastructure``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from confluent_kafka import Consumer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ingest import infrastructure
from benchmarks.metrics import (
    MODEL,
    SPEC,
    background_load,
    baseline,
    cpu_seconds,
    p50_p99,
    publish_labelled,
)
from driftline.client import Driftline
from driftline.settings import Settings
from driftline.stack.kafka import free_port
from driftline.stack.worker import WorkerProcess
from driftline.topics.catalog import Topics
from driftline.topics.clients import consumer_config
from driftline.topics.metric_bins import METRICS_VALUE
from driftline.topics.postgres_tables import schema_name
from driftline.topics.progress import merge_progress


class MetricsTopicTotals:
    """The newest document of every bin on the metrics topic, summed: what merge + bins
    have delivered, whatever projects it."""

    def __init__(self, settings: Settings) -> None:
        self._consumer = Consumer(
            consumer_config(settings.bootstrap_servers, f"bench-{uuid.uuid4().hex}")
        )
        self._consumer.subscribe([Topics.for_settings(settings).metrics.name])
        self._bins: dict[bytes, tuple[int, int]] = {}

    def totals(self) -> tuple[int, int]:
        for message in self._consumer.consume(10_000, 0.01):
            if message.error() is not None or message.key() is None:
                continue
            if message.value() is None:
                self._bins.pop(message.key(), None)
                continue
            counts = METRICS_VALUE.decode(message.value())["counts"]
            self._bins[message.key()] = (counts["n"], counts.get("labelled", 0))
        return sum(n for n, _ in self._bins.values()), sum(x for _, x in self._bins.values())

    def close(self) -> None:
        self._consumer.close()


def merge_and_bins_rate(settings: Settings, events: int, workdir: Path) -> tuple[float, float]:
    """(events/s through merge + bins, worker CPU µs per event), from the merge stage's
    first committed batch until the metrics topic holds every event and label."""
    expected = publish_labelled(settings, events)
    progress = merge_progress(settings)
    totals = MetricsTopicTotals(settings)
    worker = WorkerProcess(settings, workdir / f"worker-{settings.topic_prefix}.log").start()
    assert worker.process is not None
    try:
        first_at = first_count = None
        first_cpu = 0.0
        while True:
            now = time.perf_counter()
            if first_at is None and (done := progress.committed()) > 0:
                first_at, first_count = now, done
                first_cpu = cpu_seconds(worker.process.pid)
            if first_at is not None and totals.totals() == expected:
                assert first_count is not None
                counted = events - first_count
                cpu = cpu_seconds(worker.process.pid) - first_cpu
                return counted / (now - first_at), cpu / counted * 1e6
            time.sleep(0.005)
    finally:
        worker.stop()
        totals.close()
        progress.close()


def emission_to_row(settings: Settings, rate: int, seconds: float, workdir: Path) -> list[float]:
    """Seconds from each bin version's emission to the first poll that sees its row."""
    worker = WorkerProcess(settings, workdir / "worker-latency.log").start()
    table = f"{schema_name(settings.topic_prefix)}.bins"
    delays: list[float] = []
    try:
        with (
            psycopg.connect(settings.postgres, autocommit=True) as connection,
            background_load(settings, rate),
        ):
            seen: dict[tuple[str, str, object], int] = {}
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                rows = connection.execute(
                    f"SELECT project_id, model_id, hour, version, "
                    f"extract(epoch FROM emitted_at) FROM {table}"
                ).fetchall()
                now = time.time()
                for project, model, hour, version, emitted_s in rows:
                    key = (project, model, hour)
                    if seen.get(key, -1) < version:
                        if key in seen:  # not the rows there before the first poll
                            delays.append(now - float(emitted_s))
                        seen[key] = version
                time.sleep(0.005)
    finally:
        worker.stop()
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0, help="latency part's length")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (logs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
        workdir = Path(tmp) if args.keep is None else args.keep
        base = Settings.from_env().with_overrides(
            ingest_partitions=args.partitions, worker_port=free_port()
        )
        with infrastructure(base, workdir) as ready:

            def run(name: str, projections: bool) -> Settings:
                settings = ready.with_overrides(
                    topic_prefix=f"bench{uuid.uuid4().hex[:8]}",
                    data_dir=workdir / f"state-{name}",
                    redis_projection=projections,
                    postgres_projection=projections,
                )
                with Driftline(settings) as client:
                    client.register_model(SPEC, baseline(random.Random(0)))
                return settings

            print(f"model {MODEL}: 20 float inputs, binary; {args.events} messages, "
                  f"{args.partitions} partitions, 1 worker")  # fmt: skip
            rates: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
            for round_number in range(args.rounds):
                # Alternated, so that neither setting always runs first in its round
                # (the first run after registering was the slowest in every round).
                order = (True, False) if round_number % 2 == 0 else (False, True)
                for projections in order:
                    switch = "on" if projections else "off"
                    name = f"{switch}-{round_number}"
                    rate, cpu_us = merge_and_bins_rate(run(name, projections), args.events, workdir)
                    rates[projections].append((rate, cpu_us))
                    print(f"round {round_number + 1}, projections {switch:3}: "
                          f"{rate:9,.0f} events/s, {cpu_us:6.1f} µs CPU per event")  # fmt: skip
            on = max(rate for rate, _ in rates[True])
            off = max(rate for rate, _ in rates[False])
            print(f"merge + bins, best of {args.rounds}: projections on {on:,.0f} events/s, "
                  f"off {off:,.0f} events/s: on/off = {on / off:.2f}")  # fmt: skip
            on_median = statistics.median(rate for rate, _ in rates[True])
            off_median = statistics.median(rate for rate, _ in rates[False])
            cpu_on = statistics.median(cpu for _, cpu in rates[True])
            cpu_off = statistics.median(cpu for _, cpu in rates[False])
            print(f"merge + bins, medians: on {on_median:,.0f}, off {off_median:,.0f} events/s: "
                  f"on/off = {on_median / off_median:.2f}; CPU per event {cpu_on:.1f} vs "
                  f"{cpu_off:.1f} µs")  # fmt: skip
            half = int(on / 2)
            delays = emission_to_row(run("latency", True), half, args.seconds, workdir)
    p50, p99 = p50_p99(delays)
    print(f"bin emission -> PostgreSQL row at {half:,} events/s (half load): "
          f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms "
          f"({len(delays)} bin versions over {args.seconds:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
