"""A confluent-kafka producer configured the way every Driftline producer must be.

- Idempotent (``enable.idempotence``): a broker-side retry never writes a message twice.
- ``murmur2_random`` partitioner, the Java client's default: Faust computes table
  partitions with the same hash, so a key's messages and its state meet in one partition.
- Delivery failures are collected from the delivery reports and raised by ``flush``;
  reports come only for failures (``delivery.report.only.error``), since a Python
  callback per delivered message cost a measurable share of the merge agent's time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from driftline.topics.clients import DEAD_LETTER_MAX_BYTES, RECORD_OVERHEAD_BYTES, client_logging


class DeliveryError(RuntimeError):
    """Messages the broker did not accept; ``failures`` holds (key, error) pairs."""

    def __init__(self, failures: Sequence[tuple[bytes | None, str]]) -> None:
        shown = "; ".join(f"{key!r}: {error}" for key, error in failures[:5])
        more = f" (and {len(failures) - 5} more)" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} message(s) were not delivered: {shown}{more}")
        self.failures = list(failures)


def producer_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "compression.type": "lz4",
        "linger.ms": 5,
        "batch.num.messages": 10_000,
        "queue.buffering.max.messages": 1_000_000,
        "message.timeout.ms": 30_000,
        "delivery.report.only.error": True,
        # Large enough for any dead letter (the biggest record Driftline writes); the
        # smaller limit of every other topic is checked before producing.
        "message.max.bytes": DEAD_LETTER_MAX_BYTES + RECORD_OVERHEAD_BYTES,
        **client_logging(),
    }
    config.update(overrides)
    return config


def produce_with_room(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None = None,
    partition: int = -1,
    timestamp: int = 0,
) -> None:
    """``producer.produce``, waiting for room while the local queue is full."""
    while True:
        try:
            producer.produce(
                topic, value, key, partition=partition, headers=headers, timestamp=timestamp
            )
            return
        except BufferError:
            # Local queue full: serve delivery reports to make room, then retry.
            producer.poll(0.05)


class CheckedProducer:
    """Produces asynchronously; ``flush`` waits for every delivery and raises failures."""

    def __init__(self, bootstrap_servers: str, **overrides: Any) -> None:
        self._failures: list[tuple[bytes | None, str]] = []
        self._producer = Producer(
            producer_config(bootstrap_servers, on_delivery=self._on_delivery, **overrides)
        )

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int = -1,
        timestamp: int = 0,
    ) -> None:
        """Produce asynchronously; ``partition`` -1 lets the partitioner choose (changelogs
        name theirs: they mirror their input's partitions); ``timestamp`` 0: now."""
        produce_with_room(self._producer, topic, key, value, headers, partition, timestamp)

    def poll(self) -> None:
        self._producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining:
            self._failures.extend((None, "not delivered before flush timeout")
                                  for _ in range(remaining))  # fmt: skip
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryError(failures)

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failures.append((message.key(), str(error)))
