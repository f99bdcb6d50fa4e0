"""The model registry: a compacted topic of specs keyed ``project_id/model_id``.

Every worker and client reads the whole topic (no consumer group, all partitions from
the start), so each process knows every model. A lookup that misses reads on up to the
topic's current end before answering "unknown": a model registered a moment ago is
therefore found, and no valid event is dead-lettered for racing its registration.

That read waits on the broker (~11 ms); paid for every message of an unregistered model,
5% such traffic cut the merge agent from 12.8k to 1.7k messages/s. So a miss is
remembered for ``MISS_REFRESH_S``, unless the registry topic has grown meanwhile (which
the consumer's cached watermarks tell without asking the broker).
"""

from __future__ import annotations

import threading
import time
import uuid

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from state.models import ModelSpec
from state.registered import RegisteredModel
from topics.offsets import watermarks
from topics.producer import CheckedProducer

# How long "not registered" is believed without reading the registry topic again.
MISS_REFRESH_S = 1.0
# Misses remembered at most (a stream of random model names must not grow memory).
_MISSES_KEPT = 10_000


def publish_model(producer: CheckedProducer, topic: str, model: RegisteredModel) -> None:
    producer.produce(topic, model.key.encode(), orjson.dumps(model.to_dict()))
    producer.flush()


class ModelRegistry:
    """An in-memory view of the registry topic, caught up on demand."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._topic = topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                # Never used to commit: the registry is always read from the beginning.
                "group.id": f"driftline-registry-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                # A lookup of an unknown model asks for watermarks, which wait behind the
                # pending fetch: librdkafka's default 500 ms would be paid per lookup.
                "fetch.wait.max.ms": 10,
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=10)
        if topic not in metadata.topics or metadata.topics[topic].error is not None:
            raise RuntimeError(f"model registry topic {topic} does not exist")
        self._partitions = [
            TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.topics[topic].partitions
        ]
        self._consumer.assign(self._partitions)
        self._models: dict[str, RegisteredModel] = {}
        self._misses: dict[str, float] = {}
        self._lock = threading.Lock()
        self.catch_ups = 0
        self.catch_up()

    def get(self, model_key: str) -> RegisteredModel | None:
        model = self._models.get(model_key)
        if model is not None:
            return model
        missed = self._misses.get(model_key)
        if missed is not None and time.monotonic() - missed < MISS_REFRESH_S and not self._grown():
            return None
        self.catch_up()
        model = self._models.get(model_key)
        if model is None:
            if len(self._misses) >= _MISSES_KEPT:
                self._misses.clear()
            self._misses[model_key] = time.monotonic()
        return model

    def spec(self, model_key: str) -> ModelSpec | None:
        model = self.get(model_key)
        return None if model is None else model.spec

    def catch_up(self, timeout_s: float = 10.0) -> None:
        """Read until every partition's position reaches the end it had when we asked."""
        with self._lock:
            self.catch_ups += 1
            targets = {
                tp.partition: watermarks(self._consumer, tp, timeout_s)[1]
                for tp in self._partitions
            }
            while any(self._position(p) < end for p, end in targets.items()):
                for message in self._consumer.consume(num_messages=1000, timeout=0.2):
                    if message.error() is None:
                        self._apply(message.key(), message.value())

    def close(self) -> None:
        self._consumer.close()

    def _grown(self) -> bool:
        """Whether the broker's last fetch answer showed records not read yet (no request)."""
        for tp in self._partitions:
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high > self._position(tp.partition):
                return True
        return False

    def _position(self, partition: int) -> int:
        (position,) = self._consumer.position([TopicPartition(self._topic, partition)])
        offset: int = position.offset
        return offset if offset >= 0 else 0

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode()
        if value is None:
            self._models.pop(name, None)
            return
        try:
            self._models[name] = RegisteredModel.from_dict(orjson.loads(value))
        except (orjson.JSONDecodeError, ValueError):
            # Specs are validated before they are published; a foreign record is ignored.
            return
