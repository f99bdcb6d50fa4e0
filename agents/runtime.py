"""The batch engine under every stateful agent: consume a batch, apply it, persist, commit.

Why not Faust's own stream and Table: on this 2-core machine a Faust agent that only
decodes messages ran at ~8-14k events/s, and ~2-4k/s with a Table write per event,
against 100k+/s for a confluent-kafka passthrough (``benchmarks/faust_baseline.py``).
So the hot path consumes batches with librdkafka and keeps per-partition state in
RocksDB the way Kafka Streams does, while Faust hosts the worker (lifecycle, web views).

Per batch, in this order:
1. the handler (pure logic) turns one partition's messages into table writes and
   outgoing messages;
2. the writes go to the partition's changelog topic, with a checkpoint record of the
   next input offset, and the outgoing messages to their topics; the producer is
   flushed, so the changelog is never behind the local store;
3. the writes and the checkpoint are applied to the local RocksDB in one atomic batch;
4. the input offsets are committed (for lag monitoring; resumption uses the checkpoint).

A restarted or newly assigned partition restores from its changelog when the local
store is missing or stale, then resumes at the checkpointed input offset. State thus
reflects every input message exactly once; outgoing messages (dead letters) are at
least once.
"""

from __future__ import annotations

import gc
import logging
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from state.store import Checkpoint, PartitionStore, Write
from topics.offsets import watermarks
from topics.producer import CheckedProducer

log = logging.getLogger(__name__)

# A batch slower than this is logged: it delays every message behind it.
SLOW_BATCH_S = 0.5

# Changelog key of the record that carries the next input offset.
INPUT_CHECKPOINT_KEY = b"\x00input"

# Past the batch window, the first message waits this fraction of it for the rest of its
# burst (10 ms for the merge agent's 50 ms).
BURST_GRACE = 0.2

# The garbage collector's thresholds while runners work; CPython's default is (700, 10, 10).
# A batch allocates a few containers per message that mostly die by reference counting,
# yet live long enough (the whole batch) to be traversed, promoted and traversed again:
# at the default, collections cost the merge agent about a quarter of its time
# (benchmarks/handlers.py: 38-42k -> 58-65k events per CPU-second at 10,000).
GC_THRESHOLDS = (10_000, 10, 10)


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    # -1: the key decides (murmur2); a command for one partition names it.
    partition: int = -1


@dataclass
class BatchResult:
    writes: list[Write] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)


class BatchHandler(Protocol):
    def handle(
        self, partition: int, messages: Sequence[Message], store: PartitionStore
    ) -> BatchResult:
        """Apply one partition's messages, in offset order."""

    def tick(self, partition: int, store: PartitionStore, now_ms: int) -> BatchResult:
        """Periodic work with no input (timeouts); called about once per tick interval."""


@dataclass(frozen=True)
class RunnerConfig:
    name: str
    bootstrap_servers: str
    group_id: str
    input_topic: str
    changelog_topic: str
    data_dir: Path
    batch_max_messages: int = 10_000
    batch_within_s: float = 0.05
    tick_interval_s: float = 1.0
    session_timeout_ms: int = 10_000


def tune_garbage_collector() -> None:
    """Collect young objects less often, and leave what start-up built out of collections.

    Process-wide and idempotent: every runner calls it before its first batch. The objects
    frozen are the worker's long-lived ones (modules, app, registry); a collection would
    only traverse them again and again.
    """
    if gc.get_threshold() != GC_THRESHOLDS:
        gc.set_threshold(*GC_THRESHOLDS)
        gc.freeze()


class PartitionedRunner:
    """Runs a ``BatchHandler`` over the partitions this process is assigned."""

    def __init__(
        self,
        config: RunnerConfig,
        handler: BatchHandler,
        on_assignment: Callable[[set[int]], None] | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.handler = handler
        self._on_assignment = on_assignment
        self.stores: dict[int, PartitionStore] = {}
        self._producer = CheckedProducer(config.bootstrap_servers, **{"linger.ms": 1})
        self._consumer = Consumer(
            {
                "bootstrap.servers": config.bootstrap_servers,
                "group.id": config.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": config.session_timeout_ms,
                "heartbeat.interval.ms": max(500, config.session_timeout_ms // 5),
                "fetch.wait.max.ms": 10,
            }
        )
        self._changelog_ends: dict[int, int] = {}
        self._batch_started = 0.0  # time.monotonic() when the last batch was consumed
        self.ready = threading.Event()
        self._stop = threading.Event()

    # --- lifecycle ----------------------------------------------------------------

    def run(self) -> None:
        """Consume until ``stop()``; meant to run on a thread of its own."""
        tune_garbage_collector()
        self._consumer.subscribe(
            [self.config.input_topic], on_assign=self._assign, on_revoke=self._revoke,
            on_lost=self._revoke,
        )  # fmt: skip
        next_tick = time.monotonic() + self.config.tick_interval_s
        try:
            while not self._stop.is_set():
                messages = self._next_batch(next_tick)
                if messages:
                    self._process(messages)
                if time.monotonic() >= next_tick:
                    self._tick()
                    next_tick = time.monotonic() + self.config.tick_interval_s
        finally:
            self._close()

    def stop(self) -> None:
        self._stop.set()

    # --- the batch path -------------------------------------------------------------

    def _next_batch(self, next_tick: float) -> list[Message]:
        """Up to ``batch_max_messages``, starting at most once per ``batch_within_s``.

        librdkafka's ``consume(n, timeout)`` returns only when it has ``n`` messages or the
        timeout is over, so a fixed window made every message wait for its end: each stage
        added ``batch_within_s`` to the label-to-Redis latency even on a quiet topic. Now a
        batch collects until ``batch_within_s`` after the previous batch began (under load:
        as large and as frequent batches as before), and once that window is over, the
        first message to arrive starts the next batch after a short grace for the rest of
        its burst.
        """
        limit, within = self.config.batch_max_messages, self.config.batch_within_s
        now = time.monotonic()
        window_end = self._batch_started + within
        if now < window_end:
            messages: list[Message] = self._consumer.consume(limit, window_end - now)
        else:
            messages = self._consumer.consume(limit, 0)
            if not messages:
                wait = max(0.0, min(within, next_tick - now))
                messages = self._consumer.consume(1, wait)
                if messages and limit > 1:
                    # A short grace for the rest of a burst: messages published together
                    # then land in one batch, so no bin shows a burst half applied.
                    grace = within * BURST_GRACE
                    messages.extend(self._consumer.consume(limit - 1, grace))
        if messages:
            self._batch_started = time.monotonic()
        return messages

    def _process(self, messages: list[Message]) -> None:
        by_partition: dict[int, list[Message]] = defaultdict(list)
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: consume error: %s", self.config.name, error)
                continue
            by_partition[message.partition()].append(message)
        started = time.perf_counter()
        results: dict[int, tuple[BatchResult, int]] = {}
        for partition, batch in by_partition.items():
            store = self.stores.get(partition)
            if store is None:  # revoked while the batch was in flight
                continue
            result = self.handler.handle(partition, batch, store)
            results[partition] = (result, batch[-1].offset() + 1)
        handled = time.perf_counter()
        self._persist(results)
        done = time.perf_counter()
        if done - started > SLOW_BATCH_S:
            log.warning(
                "%s: slow batch of %d messages: handling %.0f ms, persisting %.0f ms",
                self.name, len(messages), (handled - started) * 1000, (done - handled) * 1000,
            )  # fmt: skip

    def _tick(self) -> None:
        started = time.perf_counter()
        now_ms = int(time.time() * 1000)
        results: dict[int, tuple[BatchResult, int]] = {}
        for partition, store in list(self.stores.items()):
            result = self.handler.tick(partition, store, now_ms)
            if result.writes or result.outgoing:
                results[partition] = (result, store.checkpoint().next_input_offset)
        if results:
            self._persist(results)
        if time.perf_counter() - started > SLOW_BATCH_S:
            log.warning("%s: slow tick: %.0f ms", self.name, (time.perf_counter() - started) * 1000)

    def _persist(self, results: dict[int, tuple[BatchResult, int]]) -> None:
        produced: dict[int, int] = {}
        for partition, (result, next_input) in results.items():
            for write in result.writes:
                self._producer.produce(
                    self.config.changelog_topic, write.key, write.value, partition=partition
                )
            self._producer.produce(
                self.config.changelog_topic,
                INPUT_CHECKPOINT_KEY,
                str(next_input).encode(),
                partition=partition,
            )
            produced[partition] = len(result.writes) + 1
            for out in result.outgoing:
                self._producer.produce(
                    out.topic, out.key, out.value, out.headers, partition=out.partition
                )
        self._producer.flush()
        for partition, (result, next_input) in results.items():
            # This process is the partition's only writer, so its changelog grows by exactly
            # what was produced. Were that ever wrong, the next assignment would see a
            # mismatch with the broker's end offset and restore in full: safe either way.
            self._changelog_ends[partition] += produced[partition]
            checkpoint = Checkpoint(next_input, self._changelog_ends[partition])
            self.stores[partition].write(result.writes, checkpoint)
        offsets = [
            TopicPartition(self.config.input_topic, partition, next_input)
            for partition, (_, next_input) in results.items()
            if next_input >= 0
        ]
        if offsets:
            self._consumer.commit(offsets=offsets, asynchronous=True)

    # --- assignment -----------------------------------------------------------------

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        restorer = ChangelogRestorer(self.config.bootstrap_servers, self.config.changelog_topic)
        try:
            for tp in partitions:
                path = self.config.data_dir / self.config.name / str(tp.partition)
                store, self._changelog_ends[tp.partition] = restorer.restore(tp.partition, path)
                self.stores[tp.partition] = store
                next_input = store.checkpoint().next_input_offset
                tp.offset = next_input if next_input >= 0 else OFFSET_BEGINNING
        finally:
            restorer.close()
        consumer.assign(partitions)
        self._notify_assignment()
        self.ready.set()

    def _revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            store = self.stores.pop(tp.partition, None)
            if store is not None:
                store.close()
        self._notify_assignment()

    def _notify_assignment(self) -> None:
        if self._on_assignment is not None:
            self._on_assignment(set(self.stores))

    def _close(self) -> None:
        try:
            self._consumer.close()
        except KafkaException as error:
            log.warning("%s: closing consumer: %s", self.config.name, error)
        for store in self.stores.values():
            store.close()
        self.stores.clear()


class ChangelogRestorer:
    """Brings a partition's local store level with its changelog."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._topic = topic
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": f"{topic}-restorer",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )

    def restore(self, partition: int, path: Path) -> tuple[PartitionStore, int]:
        """Open the partition's store, restoring it as needed; also return the changelog end."""
        tp = TopicPartition(self._topic, partition)
        low, high = watermarks(self._consumer, tp)
        store = PartitionStore(path)
        if store.checkpoint().next_changelog_offset == high:
            return store, high
        # Missing or stale (another worker wrote since, or a crash came between the
        # changelog flush and the local write): rebuild from the whole changelog, since
        # compaction may have dropped tombstones that a partial replay would need.
        log.info(
            "%s[%d]: local store at changelog offset %d, changelog ends at %d: restoring",
            self._topic, partition, store.checkpoint().next_changelog_offset, high,
        )  # fmt: skip
        store.close()
        shutil.rmtree(path, ignore_errors=True)
        store = PartitionStore(path)
        next_input = self._replay(partition, low, high, store) if high > low else -1
        # Only now does the store claim to match the changelog's end: a restore cut
        # short leaves a checkpoint that forces the next assignment to restore again.
        store.write_raw([], Checkpoint(next_input, high))
        return store, high

    def _replay(self, partition: int, low: int, high: int, store: PartitionStore) -> int:
        """Apply whole batches only: each ends with its checkpoint record.

        Records after the last checkpoint belong to a batch whose flush a crash cut short;
        its input is processed again after the restore, so they are dropped here. Later
        batches rewrite every key such a batch touched, so the leftovers are superseded.
        Compaction keeps this true: it keeps the newest checkpoint and everything after it.
        """
        self._consumer.assign([TopicPartition(self._topic, partition, low)])
        pending: list[tuple[bytes, bytes | None]] = []
        next_input = -1
        position = low
        while position < high:
            for message in self._consumer.consume(10_000, 1.0):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        position = high  # compaction may leave gaps before the end
                    continue
                position = message.offset() + 1
                key = message.key()
                if key == INPUT_CHECKPOINT_KEY:
                    next_input = int(message.value())
                    store.write_raw(pending, Checkpoint(next_input, -1))
                    pending = []
                elif key is not None:
                    pending.append((key, message.value()))
        if pending:
            log.warning(
                "%s[%d]: dropped %d changelog records of a batch that never completed",
                self._topic, partition, len(pending),
            )  # fmt: skip
        self._consumer.unassign()
        return next_input

    def close(self) -> None:
        self._consumer.close()
