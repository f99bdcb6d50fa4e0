"""Reading a whole topic from its start to its current end (CLI inspection and tests)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from driftline.topics.clients import consumer_config
from driftline.topics.offsets import watermarks


def read_topic(bootstrap_servers: str, topic: str, timeout_s: float = 30) -> Iterator[Message]:
    """Every message now in ``topic``, partition by partition, in offset order.

    All partitions are read at once and held until each has reached its end: read one
    after the other, every partition waited out ``consume``'s timeout (librdkafka returns
    a batch only when it is full or the time is over), a second per partition, and a
    test polling a topic of many partitions spent its time waiting.
    """
    consumer = Consumer(
        consumer_config(
            bootstrap_servers,
            f"driftline-reader-{uuid.uuid4()}",
            **{"enable.partition.eof": True},
        )
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise RuntimeError(f"topic {topic} does not exist")
        held: dict[int, list[Message]] = {}
        ends: dict[int, int] = {}
        for partition in sorted(metadata.partitions):
            low, high = watermarks(consumer, TopicPartition(topic, partition), timeout_s)
            if high > low:
                held[partition], ends[partition] = [], high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in held])
        while ends:
            for message in consumer.consume(10_000, 0.1):
                partition, error = message.partition(), message.error()
                if partition not in ends:
                    continue
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    del ends[partition]
                elif error is None:
                    held[partition].append(message)
                    if message.offset() + 1 >= ends[partition]:
                        del ends[partition]
        for partition in sorted(held):
            yield from held[partition]
    finally:
        consumer.close()
