"""The merge and bin-totals processors in-process, without Kafka: their CPU cost per event.

    python benchmarks/handlers.py [--events 200000] [--partitions 8] [--batch 1000] [--hours 6]

The same workload as ``benchmarks/metrics.py`` (a binary model with 20 float inputs and
a baseline; a third of the messages are labels for the event before), cut into per
partition batches the way the runner cuts them, and run through ``MergeProcessor.handle``
and each partition store's atomic write, then the bin-partials records through
``BinTotalsProcessor.handle`` and its tick. Rates are per CPU-second of this process
(``time.process_time``), not wall-clock: with no broker involved and other work sharing
the 2 cores, that is what stays steady enough to compare one change of the hot path with
the next. The end-to-end rate, with Kafka, is ``benchmarks/metrics.py``'s.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import Message

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.metrics import MODEL, SPEC, baseline, event_value, label_value
from driftline.agents.bin_totals import BinTotalsProcessor
from driftline.agents.merge import MergeProcessor
from driftline.agents.runtime import BatchResult, handled, ticked, tune_garbage_collector
from driftline.state.baseline import profile_baseline
from driftline.state.bins import HOUR_MS
from driftline.state.partition_tables import DIRTY
from driftline.state.registered import RegisteredModel
from driftline.state.spec import ModelSpec
from driftline.state.store import PartitionStore
from driftline.state.tables import PartitionTransaction
from driftline.topics.messages import ingest_key
from driftline.topics.partitioning import partition_for

INGEST, PARTIALS, METRICS, MODEL_BINS, DEAD = "ingest", "partials", "metrics", "model-bins", "dead"


def registered_model() -> RegisteredModel:
    spec = ModelSpec.from_dict(SPEC)
    return RegisteredModel(spec, profile_baseline(spec, baseline(random.Random(0))))


def ingest_batches(
    events: int, partitions: int, batch: int, hours: int
) -> list[tuple[int, list[Message]]]:
    """The workload as (partition, messages) batches, in the order a consumer meets them:
    event times spread over the ``hours`` before the last 6 (a backfill over a year:
    ``--hours 8760``)."""
    rng = random.Random(1)
    start_ms = int(time.time() * 1000) - (6 + hours) * HOUR_MS
    by_partition: dict[int, list[Message]] = defaultdict(list)
    for i in range(events):
        if i % 3 == 2:
            event_id, value = f"e{i - 1}", label_value(rng, f"e{i - 1}")
        else:
            event_id = f"e{i}"
            value = event_value(rng, event_id, start_ms + rng.randrange(hours * HOUR_MS))
        key = ingest_key("bench", "wide", event_id)
        partition = partition_for(key, partitions)
        offset = len(by_partition[partition])
        by_partition[partition].append(
            Message(
                topic=INGEST,
                partition=partition,
                offset=offset,
                key=key,
                value=value,
                timestamp=(1, start_ms + (6 + hours) * HOUR_MS + i),
            )
        )
    batches = []
    for start in range(0, max(map(len, by_partition.values())), batch):
        for partition, messages in sorted(by_partition.items()):
            if messages[start : start + batch]:
                batches.append((partition, messages[start : start + batch]))
    return batches


class Timed:
    """Wraps a callable and adds up the CPU seconds spent in it."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.seconds = 0.0

    def __call__(self, *args: Any) -> Any:
        started = time.process_time()
        try:
            return self.function(*args)
        finally:
            self.seconds += time.process_time() - started


class NoDeletions:
    """The daily deletion cap's place: this workload deletes nothing."""

    def grant(self, model: str, day: int, partition: int, already: int, wanted: int) -> int:
        return 0

    def publish(self, partition: int, day: int, deleted: Mapping[str, int]) -> None:
        return None


def run(events: int, partitions: int, batch: int, hours: int, workdir: Path) -> None:
    tune_garbage_collector()  # as the worker's runners do
    registered = registered_model()
    lookup = {MODEL: registered}.get
    merge = MergeProcessor(
        lookup,
        INGEST,
        DEAD,
        1_000_000,
        10,
        600.0,
        PARTIALS,
        100_000,
        NoDeletions(),
        partitions,
    )
    apply = Timed(merge._partials.apply)
    merge._partials.apply = apply  # type: ignore[method-assign]
    # As in a worker whose merge stage has a backlog: the emission budget holds.
    merge_behind = True
    bins = BinTotalsProcessor(lookup, METRICS, MODEL_BINS, 0.5, DEAD, behind=lambda: merge_behind)
    batches = ingest_batches(events, partitions, batch, hours)
    merge_stores = {p: PartitionStore(workdir / "merge" / str(p)) for p in range(partitions)}
    bins_store = PartitionStore(workdir / "bins" / "0")
    records: list[Message] = []

    now_ms = int(time.time() * 1000)
    started = time.process_time()
    written = 0.0
    for partition, messages in batches:
        result = handled(merge, partition, messages, merge_stores[partition], now_ms)
        written += persist(merge_stores[partition], result, messages[-1].offset() + 1)
        records.extend(
            Message(
                topic=PARTIALS, partition=0, offset=len(records) + i, key=out.key, value=out.value
            )
            for i, out in enumerate(result.outgoing)
            if out.topic == PARTIALS
        )
    merged = time.process_time() - started

    started = time.process_time()
    now_ms = int(time.time() * 1000)
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        persist(bins_store, handled(bins, 0, chunk, bins_store, now_ms), start + len(chunk))
        now_ms += 100
        persist(bins_store, ticked(bins, 0, bins_store, now_ms), start + len(chunk))
    # Then every bin still dirty goes out, as once the input stops: its emission is part
    # of the cost (it folds the bin's deltas).
    merge_behind = False
    while next(PartitionTransaction(bins_store).items(DIRTY), None) is not None:
        now_ms += 1000
        persist(bins_store, ticked(bins, 0, bins_store, now_ms), len(records))
    summed = time.process_time() - started

    print(f"workload:                 {events} events, {partitions} partitions, "
          f"batches of <= {batch} ({len(batches)} batches), over {hours} hours")  # fmt: skip
    print(f"merge handler + store:    {events / merged:10,.0f} events/CPU-s")
    print(f"  of which bin shares:    {apply.seconds / merged:10.1%} "
          f"({events / apply.seconds:,.0f} events/CPU-s alone)")  # fmt: skip
    print(f"  of which store writes:  {written / merged:10.1%}")
    print(f"bins handler + ticks:     {events / summed:10,.0f} events/CPU-s "
          f"({len(records)} records)")  # fmt: skip
    print(f"both:                     {events / (merged + summed):10,.0f} events/CPU-s")


def persist(store: PartitionStore, result: BatchResult, next_input: int) -> float:
    """The store's half of the runner's persist step; returns its CPU seconds."""
    started = time.process_time()
    store.write(result.writes, store.checkpoint().following(next_input))
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=6, help="hours the event times span")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="driftline-handlers-") as tmp:
        run(args.events, args.partitions, args.batch, args.hours, Path(tmp))


if __name__ == "__main__":
    main()
