"""Time-range deletion: events deleted per second while ingestion goes on.

    python benchmarks/delete.py [--events 300000] [--background-rate 5000] [--batch-size 100000]

Publishes the events over 24 hours of event time, lets one worker merge them, then
deletes 12 of those hours (about half the events) with ``update_metrics=true`` while a
background producer keeps inserting new events at ``--background-rate``. Prints the
deletion's rate (from sending the request until every partition reports it done), the
merge agent's lag during the deletion, and how many background events were merged
meanwhile. Uses KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set, else starts the embedded
broker and Redis in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ingest import SPEC, infrastructure
from driftline.client import Driftline
from driftline.internal_secret import internal_secret
from driftline.settings import Settings
from driftline.stack.kafka import free_port
from driftline.stack.worker import WorkerProcess
from driftline.state.bins import HOUR_MS
from driftline.topics.catalog import Topics
from driftline.topics.internal_routes import HEADER
from driftline.topics.messages import deletion_key, encode_delete_range, encode_ingest, ingest_key
from driftline.topics.producer import CheckedProducer
from driftline.topics.progress import GroupProgress, merge_progress

DAY0 = 490_000 * HOUR_MS // (24 * HOUR_MS) * (24 * HOUR_MS)


def event_value(rng: random.Random, event_id: str, timestamp: int) -> bytes:
    columns: dict[str, object] = {f"f{k}": rng.random() for k in range(10)}
    columns.update(score=rng.random(), label=rng.randint(0, 1))
    return encode_ingest("insert", "bench", "m", event_id, columns, timestamp)


def publish(settings: Settings, events: int) -> None:
    rng = random.Random(1)
    producer = CheckedProducer(settings.bootstrap_servers)
    topic = Topics.for_settings(settings).ingest.name
    for i in range(events):
        event_id = f"e{i}"
        value = event_value(rng, event_id, DAY0 + rng.randrange(24 * HOUR_MS))
        producer.produce(topic, ingest_key("bench", "m", event_id), value)
        if i % 10_000 == 0:
            producer.poll()
    producer.flush()


def background(settings: Settings, rate: int, stop: threading.Event, sent: list[int]) -> None:
    """New events in the hours the deletion does not touch, at ``rate`` per second."""
    rng = random.Random(2)
    producer = CheckedProducer(settings.bootstrap_servers)
    topic = Topics.for_settings(settings).ingest.name
    started = time.perf_counter()
    while not stop.is_set():
        due = int((time.perf_counter() - started) * rate)
        while sent[0] < due:
            event_id = f"bg{sent[0]}"
            value = event_value(rng, event_id, DAY0 + 12 * HOUR_MS + rng.randrange(12 * HOUR_MS))
            producer.produce(topic, ingest_key("bench", "m", event_id), value)
            sent[0] += 1
        producer.poll()
        time.sleep(0.005)
    producer.flush()


def deletion_state(settings: Settings, deletion_id: str) -> tuple[int, int]:
    """(partitions done, events deleted) as the worker reports them."""
    url = f"{settings.worker_url}/internal/deletions/{deletion_id}"
    request = urllib.request.Request(url, headers={HEADER: internal_secret(settings)})
    with urllib.request.urlopen(request, timeout=10) as response:
        records = json.loads(response.read())["partitions"].values()
    return sum(r["state"] == "done" for r in records), sum(r["deleted"] for r in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--background-rate", type=int, default=5_000)
    parser.add_argument("--batch-size", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
        workdir = Path(tmp)
        base = Settings.from_env().with_overrides(
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}",
            worker_port=free_port(),
            data_dir=workdir / "state",
            event_deletion_batch_size=args.batch_size,
        )
        with infrastructure(base, workdir) as settings:
            with Driftline(settings) as client:
                client.register_model(SPEC)
            publish(settings, args.events)
            worker = WorkerProcess(settings, workdir / "worker.log").start()
            progress = merge_progress(settings)
            try:
                progress.wait_caught_up(600)
                run_deletion(settings, args, progress)
            finally:
                progress.close()
                worker.stop()


def run_deletion(settings: Settings, args: argparse.Namespace, progress: GroupProgress) -> None:
    stop, sent = threading.Event(), [0]
    thread = threading.Thread(target=background, args=(settings, args.background_rate, stop, sent))
    thread.start()
    time.sleep(2)  # the background load is flowing before the request
    producer = CheckedProducer(settings.bootstrap_servers)
    topic = Topics.for_settings(settings).ingest.name
    value = encode_delete_range("bench", "m", "bench-delete", DAY0, DAY0 + 12 * HOUR_MS, True)
    sent_at_start = sent[0]
    started = time.perf_counter()
    for partition in range(settings.ingest_partitions):
        producer.produce(topic, deletion_key("bench", "m"), value, partition=partition)
    producer.flush()
    max_lag = 0
    while True:
        done, deleted = deletion_state(settings, "bench-delete")
        max_lag = max(max_lag, progress.lag())
        if done == settings.ingest_partitions:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    background_sent = sent[0] - sent_at_start
    stop.set()
    thread.join()
    progress.wait_caught_up(300)
    caught_up = time.perf_counter() - started - elapsed
    partitions = settings.ingest_partitions
    print(f"events published:     {args.events} over 24 h ({partitions} partitions, 1 worker)")
    print(f"deleted (12 h):       {deleted} in {elapsed:.2f} s = {deleted / elapsed:,.0f} events/s")
    print(f"batch size:           {args.batch_size}, update_metrics=true")
    print(f"background inserts:   {background_sent} sent during the deletion "
          f"({args.background_rate}/s target)")  # fmt: skip
    print(f"merge lag, max:       {max_lag} messages during the deletion; "
          f"caught up {caught_up:.1f} s after it ended")  # fmt: skip


if __name__ == "__main__":
    main()
