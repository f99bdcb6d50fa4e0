"""The merge agent's tick with many updates waiting for their inserts.

    python benchmarks/parked.py [--waiting 200000] [--expired 1000]

Parks ``--waiting`` updates (each for an id never inserted) in one partition store through
``MergeProcessor.handle``, ``--expired`` of them old enough to be due, then times one
``MergeProcessor.tick`` (which dead-letters the due ones) and a second, idle tick. The tick
runs every second on every partition: before the index by time it read every waiting
update, and with 200k of them a tick took 1.2 s and the merge agent's throughput halved.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from confluent_kafka import Message

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from driftline.agents.merge import MergeProcessor
from driftline.agents.runtime import handled, ticked
from driftline.state.registered import RegisteredModel
from driftline.state.spec import ModelSpec
from driftline.state.store import PartitionStore
from driftline.topics.messages import encode_ingest, ingest_key

SPEC = ModelSpec(project_id="bench", model_id="late", inputs=("x",), outputs=("score",),
                 targets=("label",))  # fmt: skip
TIMEOUT_S = 600.0


class NoDeletions:
    def grant(self, model: str, day: int, partition: int, already: int, wanted: int) -> int:
        return 0

    def publish(self, partition: int, day: int, deleted: Mapping[str, int]) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--waiting", type=int, default=200_000)
    parser.add_argument("--expired", type=int, default=1_000)
    args = parser.parse_args()
    handler = MergeProcessor(
        {SPEC.key: RegisteredModel(SPEC)}.get, "ingest", "dead", 1 << 20, 100, TIMEOUT_S,
        "partials", 100_000, NoDeletions(), 1,
    )  # fmt: skip
    now_ms = int(time.time() * 1000)
    due_ms = now_ms - int(TIMEOUT_S * 1000) - 1_000
    with tempfile.TemporaryDirectory(prefix="driftline-parked-") as tmp:
        store = PartitionStore(Path(tmp) / "p0")
        started = time.perf_counter()
        for first in range(0, args.waiting, 5_000):
            batch = [
                Message(
                    topic="ingest", partition=0, offset=i, key=ingest_key("bench", "late", f"u{i}"),
                    value=encode_ingest("update", "bench", "late", f"u{i}", {"label": 1}),
                    timestamp=(1, due_ms if i < args.expired else now_ms),
                )
                for i in range(first, min(first + 5_000, args.waiting))
            ]  # fmt: skip
            result = handled(handler, 0, batch, store, now_ms)
            store.write(result.writes, store.checkpoint().following(batch[-1].offset() + 1))
        parked_s = time.perf_counter() - started

        started = time.perf_counter()
        result = ticked(handler, 0, store, now_ms)
        due_tick_s = time.perf_counter() - started
        store.write(result.writes, store.checkpoint().following(args.waiting))
        letters = sum(1 for out in result.outgoing if out.topic == "dead")
        started = time.perf_counter()
        idle = ticked(handler, 0, store, now_ms)
        idle_tick_s = time.perf_counter() - started
        store.close()
    print(f"parked {args.waiting:,} updates in {parked_s:.1f} s")
    print(f"tick with {args.expired:,} due:   {due_tick_s * 1000:8.1f} ms "
          f"({letters:,} dead letters)")  # fmt: skip
    print(f"idle tick:             {idle_tick_s * 1000:8.1f} ms "
          f"({len(idle.outgoing)} dead letters)")  # fmt: skip


if __name__ == "__main__":
    main()
