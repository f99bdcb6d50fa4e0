"""A processor without a broker: feed it messages, get back what it sends.

Kafka Streams ships a ``TopologyTestDriver`` so that every processor can be tested
without a cluster; this is Driftline's. It runs a ``Processor`` exactly as the runtime
does — one ``PartitionTransaction`` per batch, the batch's writes and checkpoint applied
to a real ``PartitionStore`` in one atomic write — minus the Kafka transaction that
would carry the same writes to the changelog. Component tests drive each processor
through it: batches, ticks, redeliveries, dead letters.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Message

from driftline.agents.runtime import (
    BatchResult,
    Outgoing,
    Processor,
    dead_lettered,
    handled,
    ticked,
)
from driftline.state.store import PartitionStore


@dataclass
class Input:
    """One message to send: what a producer would put on the processor's input topic."""

    key: bytes | None
    value: bytes | None
    # Kafka timestamp in ms; None: the driver's clock.
    timestamp_ms: int | None = None
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class DriverPartition:
    """One input partition: its log so far and its store."""

    store: PartitionStore
    log: list[Message] = field(default_factory=list)


class ProcessorDriver:
    """Drives one processor over any number of input partitions, each with its own store
    under ``path``; the clock is ``now_ms``, moved by the test."""

    def __init__(
        self, processor: Processor, path: Path, input_topic: str = "input", now_ms: int = 0
    ) -> None:
        self.processor = processor
        self.path = path
        self.input_topic = input_topic
        self.now_ms = now_ms
        self.partitions: dict[int, DriverPartition] = {}

    def partition(self, number: int) -> DriverPartition:
        if number not in self.partitions:
            store = PartitionStore(self.path / str(number))
            self.partitions[number] = DriverPartition(store)
        return self.partitions[number]

    def store(self, partition: int = 0) -> PartitionStore:
        return self.partition(partition).store

    def message(self, partition: int, sent: Input) -> Message:
        """The message the broker would hand the processor for ``sent``: appended to the
        partition's log at the next offset."""
        log = self.partition(partition).log
        timestamp = self.now_ms if sent.timestamp_ms is None else sent.timestamp_ms
        message = Message(
            topic=self.input_topic,
            partition=partition,
            offset=len(log),
            key=sent.key,
            value=sent.value,
            timestamp=(1, timestamp),
            headers=sent.headers,
        )
        log.append(message)
        return message

    def send(self, inputs: Iterable[Input], partition: int = 0) -> list[Outgoing]:
        """Append ``inputs`` to the partition's log and process them as one batch."""
        batch = [self.message(partition, sent) for sent in inputs]
        return self.process(batch, partition) if batch else []

    def process(self, batch: Sequence[Message], partition: int = 0) -> list[Outgoing]:
        """Process messages already in the log (a redelivery, for one) as one batch."""
        store = self.store(partition)
        result = handled(self.processor, partition, batch, store, self.now_ms)
        return self._committed(store, result, batch[-1].offset() + 1)

    def tick(self, partition: int = 0) -> list[Outgoing]:
        store = self.store(partition)
        result = ticked(self.processor, partition, store, self.now_ms)
        return self._committed(store, result, store.checkpoint().next_input_offset)

    def dead_letter(self, message: Message, reason: str) -> list[Outgoing]:
        partition = message.partition()
        store = self.store(partition)
        result = dead_lettered(self.processor, partition, message, reason, store)
        return self._committed(store, result, message.offset() + 1)

    def close(self) -> None:
        for partition in self.partitions.values():
            partition.store.close()

    def _committed(
        self, store: PartitionStore, result: BatchResult, next_input: int
    ) -> list[Outgoing]:
        store.write(result.writes, store.checkpoint().following(next_input))
        return result.outgoing
