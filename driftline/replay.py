"""``driftline replay``: rebuild derived state from what Kafka retains.

Two replays, for two losses:

- ``bins``: the bins of a model, and everything built on them (the metrics topic, Redis,
  PostgreSQL, the alerts), from the events the worker stores. A ``rebuild_bins`` command
  goes to every ingest partition; each partition recomputes its shares of the model's
  bins from its stored events in one transaction and sends them all into a new
  generation, which the bins stage swaps in once every partition has; every bin is then
  re-emitted whole. For a logic change in the bin rules or metric formulas, or derived
  state lost or suspect. Limited by nothing Kafka retains: the events are the worker's
  store (its changelog is compacted, never expired).
- ``events``: the ingest messages themselves, from a time on, copied onto the ingest
  topic again in their partitions' order with their keys, headers and Kafka timestamps.
  Inserts carry their ids, so a replayed insert replaces its event and a replayed update
  sets what it set; the events end as they were, and an event store that lost them gets
  them back. Limited by the ingest topic's retention: what it no longer holds cannot be
  replayed. Messages that arrived on another partition than their key's are replayed
  where the worker forwarded them (their copy), never twice; deletion requests are not
  replayed (their steps would run again): re-issue those made since the replay's start.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition
from tqdm import tqdm

from driftline.settings import Settings
from driftline.state.names import split_model_key
from driftline.topics.catalog import Topics
from driftline.topics.clients import consumer_config
from driftline.topics.messages import FORWARDED_FROM, OPS, encode_rebuild_bins
from driftline.topics.offsets import watermarks
from driftline.topics.partitioning import partition_for
from driftline.topics.producer import CheckedProducer

REPLAYED_FROM = "driftline.replayed-from"


def rebuild_bins(settings: Settings, model: str) -> int:
    """Ask every ingest partition to recompute and send its shares of ``model``'s bins
    into a new generation (numbered by the time of asking: a later replay's is newer);
    the number of partitions asked."""
    project_id, model_id = split_model_key(model)
    ingest = Topics.for_settings(settings).ingest
    producer = CheckedProducer(settings.bootstrap_servers)
    command = encode_rebuild_bins(project_id, model_id, generation=time.time_ns() // 1000)
    for partition in range(ingest.partitions):
        producer.produce(ingest.name, model.encode(), command, partition=partition)
    producer.flush()
    return ingest.partitions


@dataclass
class EventsReplay:
    """What ``replay_events`` did."""

    replayed: int = 0
    # Skipped: a message on a partition not its key's (its forwarded copy is replayed).
    foreign: int = 0
    # Skipped: deletion and rebuild requests, and messages that are not JSON objects.
    requests: int = 0
    elapsed_s: float = 0.0

    def lines(self) -> list[str]:
        rate = self.replayed / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return [
            f"replayed {self.replayed:,} ingest messages in {self.elapsed_s:.1f} s ({rate:,.0f}/s)",
            f"skipped {self.foreign:,} that arrived on another partition than their key's "
            "(their forwarded copies were replayed)",
            f"skipped {self.requests:,} deletion and rebuild requests and unreadable messages",
        ]


def replay_events(
    settings: Settings, since_ms: int, until_ms: int | None = None, progress: bool = True
) -> EventsReplay:
    """Copy the ingest messages from ``since_ms`` (Kafka timestamp) up to ``until_ms`` or
    to the end as it is when the replay starts, partition by partition, in order."""
    ingest = Topics.for_settings(settings).ingest
    report = EventsReplay()
    started = time.perf_counter()
    group = f"driftline-replay-{uuid.uuid4()}"
    consumer = Consumer(
        consumer_config(settings.bootstrap_servers, group, **{"enable.partition.eof": True})
    )
    producer = CheckedProducer(settings.bootstrap_servers, **{"linger.ms": 50})
    try:
        spans = _spans(consumer, ingest.name, ingest.partitions, since_ms, until_ms)
        total = sum(end - start for start, end in spans.values())
        with tqdm(total=total, unit="msg", disable=not progress, desc="replay") as bar:
            for partition, (start, end) in spans.items():
                for message in _messages(consumer, ingest.name, partition, start, end):
                    _replay(message, ingest.partitions, producer, report)
                    bar.update()
                producer.flush()
    finally:
        consumer.close()
    report.elapsed_s = time.perf_counter() - started
    return report


def _spans(
    consumer: Consumer, topic: str, partitions: int, since_ms: int, until_ms: int | None
) -> dict[int, tuple[int, int]]:
    """Per partition, the offsets [start, end) to replay: from the first message at or
    after ``since_ms`` to the first at or after ``until_ms`` (or the end now)."""

    def offsets_at(ms: int) -> list[int]:
        asked = [TopicPartition(topic, p, ms) for p in range(partitions)]
        return [found.offset for found in consumer.offsets_for_times(asked, timeout=30)]

    ends = [watermarks(consumer, TopicPartition(topic, p), 30)[1] for p in range(partitions)]
    starts = offsets_at(since_ms)
    untils = ends if until_ms is None else offsets_at(until_ms)
    spans = {}
    for partition in range(partitions):
        end = ends[partition] if untils[partition] < 0 else untils[partition]
        start = end if starts[partition] < 0 else starts[partition]
        spans[partition] = (start, end)
    return spans


def _messages(
    consumer: Consumer, topic: str, partition: int, start: int, end: int
) -> Iterator[Message]:
    """The partition's messages in [start, end). The end can be a transaction's commit
    marker, an offset no message holds (the merge agent writes to this topic in
    transactions): reaching the partition's end (EOF) ends the span too."""
    if start >= end:
        return
    consumer.assign([TopicPartition(topic, partition, start)])
    while True:
        for message in consumer.consume(10_000, 1.0):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    return
                continue
            if message.offset() >= end:
                return
            yield message


def _replay(
    message: Message, partitions: int, producer: CheckedProducer, report: EventsReplay
) -> None:
    """Copy one message, unless it is a request or not on its key's partition."""
    key, value = message.key(), message.value()
    try:
        decoded = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        decoded = None
    if not isinstance(decoded, dict) or decoded.get("op") not in OPS:
        report.requests += 1
        return
    partition = message.partition()
    if key is None or partition_for(key, partitions) != partition:
        report.foreign += 1
        return
    origin = f"{partition}:{message.offset()}".encode()
    kept = [(name, raw) for name, raw in message.headers() or [] if name != FORWARDED_FROM]
    headers = [*kept, (REPLAYED_FROM, origin)]
    producer.produce(message.topic(), key, value, headers, partition, message.timestamp()[1])
    report.replayed += 1
