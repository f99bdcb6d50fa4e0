"""Merge-agent throughput against a raw confluent-kafka passthrough of the same messages.

    python benchmarks/ingest.py [--events 200000] [--partitions 8] [--unregistered 0.05]

Publishes the events to a fresh ingest topic while no worker runs, then starts a real
worker process and measures its sustained rate from its first committed batch to its
last (start-up excluded). The passthrough then reads the same topic with a bare
confluent-kafka consumer, decodes every value with orjson and produces it to another
topic. ``--unregistered`` makes that share of the messages inserts for a model that was
never registered (each one dead-lettered): once, each cost a registry catch-up of ~11 ms.
Uses KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set, else starts the embedded broker and
Redis in a temporary directory.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer

from driftline.client import Driftline
from driftline.settings import Settings
from driftline.stack import LocalKafka, LocalPostgres, LocalRedis
from driftline.stack.kafka import free_broker_port, free_port
from driftline.stack.worker import WorkerProcess
from driftline.topics.admin import ensure_topics
from driftline.topics.catalog import Topics, TopicSpec
from driftline.topics.messages import encode_ingest, ingest_key
from driftline.topics.producer import CheckedProducer
from driftline.topics.progress import merge_progress

SPEC = {
    "project_id": "bench",
    "model_id": "m",
    "inputs": [f"f{i}" for i in range(10)],
    "outputs": ["score"],
    "targets": ["label"],
    "metadata": ["uri"],
}


@contextmanager
def infrastructure(base: Settings, workdir: Path) -> Iterator[Settings]:
    """The servers the environment names, else ones of the benchmark's own in ``workdir``:
    a broker, Redis and PostgreSQL (which a worker projects into by default)."""
    kafka = redis_server = postgres_server = None
    settings = base
    if base.kafka_bootstrap_servers is None:
        kafka = LocalKafka(base.home, workdir / "kafka", free_broker_port(), base.kafka_version)
        kafka.start()
        settings = settings.with_overrides(kafka_bootstrap_servers=kafka.bootstrap_servers)
    if base.redis_url is None:
        redis_server = LocalRedis(workdir / "redis", free_port())
        redis_server.start()
        settings = settings.with_overrides(redis_url=redis_server.url)
    if base.postgres_url is None and base.postgres_projection:
        postgres_server = LocalPostgres(workdir / "postgres", free_port())
        postgres_server.start()
        settings = settings.with_overrides(postgres_url=postgres_server.url)
    try:
        yield settings
    finally:
        for server in (kafka, redis_server, postgres_server):
            if server is not None:
                server.stop()


def publish(settings: Settings, events: int, unregistered: float = 0.0) -> float:
    """Insert ``events`` (a third of them later labelled, ``unregistered`` of them for an
    unknown model); return the publishing rate."""
    rng = random.Random(1)
    producer = CheckedProducer(settings.bootstrap_servers)
    topic = Topics.for_settings(settings).ingest.name
    now = int(time.time() * 1000)
    start = time.perf_counter()
    for i in range(events):
        if rng.random() < unregistered:
            event_id = f"e{i}"
            value = encode_ingest("insert", "bench", "ghost", event_id, {"f0": 1.0}, now - i)
            producer.produce(topic, ingest_key("bench", "ghost", event_id), value)
            continue
        if i % 3 == 2:
            event_id = f"e{i - 1}"
            value = encode_ingest("update", "bench", "m", event_id, {"label": rng.randint(0, 1)})
        else:
            event_id = f"e{i}"
            columns = {f"f{k}": rng.random() for k in range(10)}
            columns.update(score=rng.random(), label=None)
            value = encode_ingest("insert", "bench", "m", event_id, columns, now - i)
        producer.produce(topic, ingest_key("bench", "m", event_id), value)
        if i % 10_000 == 0:
            producer.poll()
    producer.flush()
    return events / (time.perf_counter() - start)


def merge_rate(settings: Settings, events: int, workdir: Path) -> float:
    progress = merge_progress(settings)
    worker = WorkerProcess(settings, workdir / "worker.log").start()
    try:
        first_at, first_count = None, 0
        while True:
            done = progress.committed()
            now = time.perf_counter()
            if first_at is None and done > 0:
                first_at, first_count = now, done
            if done >= events:
                assert first_at is not None
                return (done - first_count) / (now - first_at)
            time.sleep(0.01)
    finally:
        worker.stop()
        progress.close()


def passthrough_rate(settings: Settings, events: int) -> float:
    topics = Topics.for_settings(settings)
    out = TopicSpec(f"{settings.topic_prefix}.passthrough", settings.ingest_partitions)
    ensure_topics(settings.bootstrap_servers, [out])
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"passthrough-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "linger.ms": 5,
         "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000}
    )  # fmt: skip
    consumer.subscribe([topics.ingest.name])
    seen = 0
    start = None
    while seen < events:
        batch = consumer.consume(10_000, 1.0)
        if start is None and batch:
            start = time.perf_counter()
        for message in batch:
            if message.error() is None:
                orjson.loads(message.value())
                producer.produce(out.name, message.value(), message.key())
                seen += 1
        producer.poll(0)
    producer.flush()
    assert start is not None
    rate = seen / (time.perf_counter() - start)
    consumer.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--unregistered", type=float, default=0.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
        workdir = Path(tmp)
        base = Settings.from_env().with_overrides(
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}",
            ingest_partitions=args.partitions,
            worker_port=free_port(),
            data_dir=workdir / "state",
        )
        with infrastructure(base, workdir) as settings:
            with Driftline(settings) as client:
                client.register_model(SPEC)
            published = publish(settings, args.events, args.unregistered)
            merged = merge_rate(settings, args.events, workdir)
            raw = passthrough_rate(settings, args.events)
    print(f"events:              {args.events} ({args.partitions} partitions, 1 worker, "
          f"{args.unregistered:.0%} for an unregistered model)")  # fmt: skip
    print(f"publish (client):    {published:10,.0f} events/s")
    print(f"merge agent:         {merged:10,.0f} events/s (sustained, start-up excluded)")
    print(f"raw passthrough:     {raw:10,.0f} events/s (confluent consume, orjson, produce)")
    print(f"merge / passthrough: {merged / raw:10.2f}")


if __name__ == "__main__":
    main()
