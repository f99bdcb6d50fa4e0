"""Reading a whole topic from its start to its current end (CLI inspection and tests)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from driftline.topics.clients import consumer_config
from driftline.topics.offsets import watermarks


def read_topic(bootstrap_servers: str, topic: str, timeout_s: float = 30) -> Iterator[Message]:
    """Every message now in ``topic``, partition by partition, in offset order."""
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
        for partition in sorted(metadata.partitions):
            tp = TopicPartition(topic, partition)
            low, high = watermarks(consumer, tp, timeout_s)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
            done = False
            while not done:
                for message in consumer.consume(10_000, 1.0):
                    error = message.error()
                    if error is not None and error.code() == KafkaError._PARTITION_EOF:
                        done = True
                    elif error is None:
                        yield message
                        done = done or message.offset() + 1 >= high
    finally:
        consumer.close()
