"""An in-memory view of a whole (small, compacted) topic, caught up on demand.

No consumer group, all partitions from the start: every process that holds one knows the
whole topic. A lookup that misses reads on up to the topic's current end before
answering "unknown", so a record produced a moment ago (by any process) is found.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from driftline.state.tables import TEXT, Codec
from driftline.topics.clients import consumer_config
from driftline.topics.offsets import watermarks

V = TypeVar("V")

# What the view does with each record (key, value; a None value is a tombstone).
Apply = Callable[[bytes | None, bytes | None], None]


def decoded_records(codec: Codec[V], apply: Callable[[str, V | None], None]) -> Apply:
    """An ``Apply`` for a topic keyed by text: each value decoded with ``codec`` (a
    tombstone as None) and given to ``apply``. A record that does not decode is ignored:
    Driftline publishes only records it validated, and a foreign one must not stop a
    reader."""

    def apply_record(key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        try:
            record = None if value is None else codec.decode(value)
        except ValueError:  # orjson's JSONDecodeError is one
            return
        apply(TEXT.decode(key), record)

    return apply_record


class TopicView:
    def __init__(self, bootstrap_servers: str, topic: str, apply: Apply, what: str) -> None:
        self._topic = topic
        self._apply = apply
        self._consumer = Consumer(
            consumer_config(
                bootstrap_servers,
                # Never used to commit: the view is always read from the beginning.
                f"driftline-view-{uuid.uuid4()}",
                # A lookup that misses asks for watermarks, which wait behind the pending
                # fetch: librdkafka's default 500 ms would be paid per lookup.
                **{"fetch.wait.max.ms": 10},
            )
        )
        metadata = self._consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise RuntimeError(f"{what} topic {topic} does not exist")
        self._partitions = [
            TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions
        ]
        self._consumer.assign(self._partitions)
        # Held while records are applied: readers that iterate the view take it too.
        self.lock = threading.Lock()

    def catch_up(self, timeout_s: float = 10.0) -> None:
        """Read until every partition's position reaches the end it had when we asked."""
        with self.lock:
            targets = {
                tp.partition: watermarks(self._consumer, tp, timeout_s)[1]
                for tp in self._partitions
            }
            while any(self._position(p) < end for p, end in targets.items()):
                for message in self._consumer.consume(num_messages=1000, timeout=0.2):
                    if message.error() is None:
                        self._apply(message.key(), message.value())

    def grown(self) -> bool:
        """Whether the broker's last fetch answer showed records not read yet: the
        consumer's cached watermarks, no request."""
        for tp in self._partitions:
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high > self._position(tp.partition):
                return True
        return False

    def close(self) -> None:
        self._consumer.close()

    def _position(self, partition: int) -> int:
        (position,) = self._consumer.position([TopicPartition(self._topic, partition)])
        offset: int = position.offset
        return offset if offset >= 0 else 0
