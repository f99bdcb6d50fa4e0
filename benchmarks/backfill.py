"""A backfill over a day of hours against the same backfill over a year of hours.

    python benchmarks/backfill.py [--events 1000000] [--partitions 8] [--spans 24,8760]

SPEC §3: the cost of a change grows with the events it touches, not with how many hours a
stream spans. For each span, the same number of labelled events of the 20-input binary
model (benchmarks/metrics.py), with original timestamps spread uniformly over that many
past hours, is published while no worker runs; then a worker starts and the run is timed
from the merge stage's first committed batch until the bins Redis serves hold every
event. Printed per span: events/s, the worker's CPU per event and its slowest batches;
then the year's rate as a share of the day's (the goal: at least 50%). Every run's bins
are checked against a batch recomputation of the published events (``bins_of``, a
different path from the streaming stages), computed in chunks from the same seeded
generator so a million events never sit in memory at once. Uses KAFKA_BOOTSTRAP_SERVERS /
REDIS_URL / DRIFTLINE_POSTGRES_URL when set, else starts the servers in a temporary
directory.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ingest import infrastructure
from benchmarks.metrics import INPUTS, MODEL, SPEC, baseline, cpu_seconds
from driftline.client import Driftline
from driftline.settings import Settings
from driftline.stack.kafka import free_port
from driftline.stack.worker import WorkerProcess
from driftline.state.baseline import profile_baseline
from driftline.state.bins import HOUR_MS, BinKey, ContributionRules, Counters, add_into, bins_of
from driftline.state.events import StoredEvent
from driftline.state.spec import ModelSpec
from driftline.topics.catalog import Topics
from driftline.topics.messages import encode_ingest, ingest_key
from driftline.topics.producer import CheckedProducer
from driftline.topics.progress import merge_progress
from driftline.topics.redis_bins import RedisBins
from tests.support.postgres import drop_schema
from tests.support.topics import drop_topics

CHUNK = 50_000


@dataclass(frozen=True)
class Backfill:
    """``events`` labelled events over ``hours`` hours that end two days ago."""

    events: int
    hours: int

    def first_hour_ms(self) -> int:
        return (int(time.time() * 1000) // HOUR_MS - 48 - self.hours) * HOUR_MS

    def rows(self, first_hour_ms: int) -> Iterator[tuple[str, int, dict[str, Any]]]:
        """(event id, event time, columns) of every event, the same for the same span."""
        rng = random.Random(self.hours)
        for i in range(self.events):
            columns: dict[str, Any] = {f: rng.gauss(0.1, 1.1) for f in INPUTS}
            columns.update(score=rng.random(), label=rng.randint(0, 1))
            yield f"e{i}", first_hour_ms + rng.randrange(self.hours * HOUR_MS), columns


@dataclass(frozen=True)
class Result:
    hours: int
    events_per_s: float
    cpu_us: float
    elapsed_s: float
    slowest_batches: list[str]


def publish(settings: Settings, backfill: Backfill, first_hour_ms: int) -> None:
    producer = CheckedProducer(settings.bootstrap_servers)
    topic = Topics.for_settings(settings).ingest.name
    for i, (event_id, timestamp, columns) in enumerate(backfill.rows(first_hour_ms)):
        value = encode_ingest("insert", "bench", "wide", event_id, columns, timestamp)
        producer.produce(topic, ingest_key("bench", "wide", event_id), value)
        if i % 10_000 == 0:
            producer.poll()
    producer.flush()


def served_events(bins: RedisBins) -> int:
    return sum(b["counts"]["n"] for b in bins.read_range(MODEL, 0, 2**62))


def run(settings: Settings, backfill: Backfill, workdir: Path) -> Result:
    """Publish, then time the worker from its first committed batch to Redis holding all
    events; check the bins against the batch recomputation."""
    first_hour_ms = backfill.first_hour_ms()
    publish(settings, backfill, first_hour_ms)
    progress = merge_progress(settings)
    bins = RedisBins(redis.Redis.from_url(settings.redis), settings.topic_prefix)
    log = workdir / f"worker-{backfill.hours}h.log"
    worker = WorkerProcess(settings, log).start()
    assert worker.process is not None
    pid = worker.process.pid
    try:
        first_at = None
        first_count = 0
        first_cpu = 0.0
        merged = False
        while True:
            now = time.perf_counter()
            if first_at is None and (done := progress.committed()) > 0:
                first_at, first_count, first_cpu = now, done, cpu_seconds(pid)
            # Redis is read only once the merge stage is through, and then twice a second:
            # reading a year's 8,760 bins every few ms took a core from the worker.
            merged = merged or progress.committed() >= backfill.events
            if merged and served_events(bins) == backfill.events:
                counted = backfill.events - first_count
                result = Result(
                    backfill.hours,
                    counted / (now - first_at),
                    (cpu_seconds(pid) - first_cpu) / counted * 1e6,
                    now - first_at,
                    slowest_batches(log),
                )
                break
            time.sleep(0.5 if merged else 0.05)
    finally:
        worker.stop()
        progress.close()
    check_against_recomputation(bins, backfill, first_hour_ms)
    return result


def check_against_recomputation(bins: RedisBins, backfill: Backfill, first_hour_ms: int) -> None:
    """Every served bin's counters equal the batch recomputation (the ingest delays
    aside: they depend on when the events arrived)."""
    spec = ModelSpec.from_dict(SPEC)
    rules = {MODEL: ContributionRules(spec, profile_baseline(spec, baseline(random.Random(0))))}
    expected: dict[BinKey, Counters] = {}
    rows = backfill.rows(first_hour_ms)
    while chunk := list(islice(rows, CHUNK)):
        events = [(MODEL, StoredEvent(i, ts, columns, 0, 0)) for i, ts, columns in chunk]
        for key, counters in bins_of(rules, events).items():
            add_into(expected.setdefault(key, {}), counters)
    served = {
        (MODEL, b["hour_start_ms"] // HOUR_MS): _without_delays(b["counts"])
        for b in bins.read_range(MODEL, 0, 2**62)
    }
    wanted = {key: _without_delays(counters) for key, counters in expected.items()}
    if served != wanted:
        differing = [
            key for key in wanted.keys() | served.keys() if served.get(key) != wanted.get(key)
        ]
        raise SystemExit(f"{backfill.hours}h: {len(differing)} bins differ from the recomputation")
    print(f"  {backfill.hours}h: all {len(wanted)} bins equal the batch recomputation")


def _without_delays(counters: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counters.items() if k != "delay_ms"}


def slowest_batches(log: Path, count: int = 3) -> list[str]:
    """The worker's slow-batch warnings, slowest first (it logs batches over a second)."""
    pattern = r"(\S+): slow batch of (\d+) messages: handling (\d+) ms, committing (\d+) ms"
    found = re.findall(pattern, log.read_text())
    ordered = sorted(((int(h) + int(c), stage, n) for stage, n, h, c in found), reverse=True)
    return [f"{stage} {n} msgs {ms} ms" for ms, stage, n in ordered[:count]]


def drop_run(settings: Settings, named: Settings) -> None:
    """The run's topics, PostgreSQL schema and Redis keys, off the servers the environment
    ``named`` (the benchmark's own go with its directory, kept with ``--keep``): each run
    holds a million events, and runs add up (55 GB of topics filled the development
    machine's disk). The tests' own clean-up does the topics and the schema."""
    prefix = settings.topic_prefix
    if named.kafka_bootstrap_servers is not None:
        drop_topics(settings.bootstrap_servers, prefix)
    if named.postgres_url is not None:
        drop_schema(settings.postgres, prefix)
    if named.redis_url is not None:
        client = redis.Redis.from_url(settings.redis)
        found = client.scan_iter(match=f"{prefix}:*", count=1000)
        while keys := list(islice(found, 1000)):
            client.delete(*keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--spans", default="24,8760", help="hours each backfill spans")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (logs)")
    args = parser.parse_args()
    spans = [int(hours) for hours in args.spans.split(",")]
    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
        workdir = Path(tmp) if args.keep is None else args.keep
        base = Settings.from_env().with_overrides(
            ingest_partitions=args.partitions, worker_port=free_port()
        )
        print(f"events: {args.events:,} labelled, 20 float inputs, binary; "
              f"{args.partitions} partitions, 1 worker")  # fmt: skip
        results = []
        with infrastructure(base, workdir) as settings:
            for hours in spans:
                spanned = settings.with_overrides(
                    topic_prefix=f"bench{uuid.uuid4().hex[:8]}",
                    data_dir=workdir / f"state-{hours}h",
                )
                with Driftline(spanned) as client:
                    client.register_model(SPEC, baseline(random.Random(0)))
                results.append(run(spanned, Backfill(args.events, hours), workdir))
                drop_run(spanned, named=base)
    for result in results:
        print(f"{result.hours:>5} hours: {result.events_per_s:9,.0f} events/s "
              f"({result.elapsed_s:6.1f} s), worker CPU {result.cpu_us:6.1f} µs/event; "
              f"slowest: {', '.join(result.slowest_batches) or 'none over 1 s'}")  # fmt: skip
    if len(results) >= 2:
        ratio = results[-1].events_per_s / results[0].events_per_s
        print(f"{results[-1].hours} hours vs {results[0].hours} hours: {ratio:.2f} "
              "of the events/s (goal: at least 0.50)")  # fmt: skip


if __name__ == "__main__":
    main()
