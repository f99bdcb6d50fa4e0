"""The batch engine under every stateful agent: consume a batch, apply it, commit it.

Why not Faust's own stream and Table: on this 2-core machine a Faust agent that only
decodes messages ran at ~8-14k events/s, and ~2-4k/s with a Table write per event,
against 100k+/s for a confluent-kafka passthrough (``benchmarks/faust_baseline.py``).
So the hot path consumes batches with librdkafka and keeps per-partition state in
RocksDB the way Kafka Streams does, while Faust hosts the worker (lifecycle, web views).

Per batch, in this order:
1. the processor turns each partition's messages into table writes (through a
   ``PartitionTransaction``) and outgoing messages; a record the broker would refuse is
   caught here;
2. each partition's writes go to its changelog partition, closed by a checkpoint record
   (the next input offset), with the messages the batch sends, in one Kafka transaction
   of the partition's own producer (``agents.transactions``) — all visible, or none; the
   partitions of a batch commit side by side;
3. the writes and the checkpoint go to the partition's RocksDB in one atomic batch, and
   the input offsets are committed to the consumer group (for lag monitoring only).

A newly assigned partition first fences its previous owner (a transactional producer of
the same id), then is restored from its changelog unless its store is at the changelog's
last checkpoint (``agents.restore``). State thus reflects every input message exactly
once, and so do the outputs: a dead letter, a bin delta, a deletion continuation or a
forwarded message is written once, with the batch that caused it.

Error policy (SPEC §5). An exception while messages are applied is their fault unless it
is an infrastructure error: the partition's batch is applied again in halves until the
poison message is alone, which is dead-lettered with the exception as its reason, and
the rest goes on. An infrastructure error (the broker, an outage) is waited out: nothing
of the batch is committed, the input is rewound to the stores' checkpoints and consumed
again after a backoff. Only a failing local store stops a runner.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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

from driftline.agents.restore import ChangelogRestorer
from driftline.agents.stage_metrics import StageMetrics
from driftline.agents.transactions import (
    NotCommittedError,
    PartitionTransactions,
    RecordRefusedError,
)
from driftline.state.store import Checkpoint, PartitionStore, StoreResources, Write
from driftline.state.tables import PartitionTransaction
from driftline.topics.changelog import checkpoint_record
from driftline.topics.clients import DEAD_LETTER_MAX_BYTES, RECORD_MAX_BYTES, consumer_config
from driftline.topics.dead_letters import DeadLetter
from driftline.topics.outages import OutageLog

log = logging.getLogger(__name__)

# A batch slower than this is logged: it delays every message behind it.
SLOW_BATCH_S = 0.5

# Past the batch window, the first message waits this fraction of it for the rest of its
# burst (10 ms for the merge agent's 50 ms).
BURST_GRACE = 0.2
# A runner that saw a backlog this recently is behind its input (``PartitionedRunner.behind``).
BEHIND_WITHIN_S = 5.0

# The garbage collector's thresholds while runners work; CPython's default is (700, 10, 10).
# A batch allocates a few containers per message that mostly die by reference counting,
# yet live long enough (the whole batch) to be traversed, promoted and traversed again:
# at the default, collections cost the merge agent about a quarter of its time
# (benchmarks/handlers.py: 38-42k -> 58-65k events per CPU-second at 10,000).
GC_THRESHOLDS = (10_000, 10, 10)


class InfrastructureError(Exception):
    """A dependency failed, not the message: the batch is retried after a backoff."""


# What is waited out rather than blamed on a message.
INFRASTRUCTURE = (KafkaException, InfrastructureError, NotCommittedError)


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    # -1: the key decides (murmur2); a command for one partition names it.
    partition: int = -1
    # Kafka timestamp in ms; 0: the time of producing. A forwarded message keeps its own.
    timestamp: int = 0


@dataclass
class BatchResult:
    """What a committed batch leaves: its table writes and the messages it sends."""

    writes: list[Write] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)


class Processor(Protocol):
    """A stateful stage: decodes its input, asks ``state`` what follows, encodes the
    outputs. It reads and writes its tables only through the batch's transaction, and is
    told the time, so the runtime and a test driver run it the same way."""

    def handle(
        self,
        partition: int,
        messages: Sequence[Message],
        tx: PartitionTransaction,
        now_ms: int,
    ) -> list[Outgoing]:
        """Apply one partition's messages, in offset order."""

    def tick(self, partition: int, tx: PartitionTransaction, now_ms: int) -> list[Outgoing]:
        """Periodic work with no input (timeouts); called about once per tick interval."""

    def dead_letter(
        self, partition: int, message: Message, reason: str, tx: PartitionTransaction
    ) -> list[Outgoing]:
        """What a message that could not be applied leaves: its dead letter, counters."""


def dead_letter_to(topic: str, letter: DeadLetter) -> Outgoing:
    """A dead letter as an outgoing record, cut to fit the dead-letter topic's limit."""
    fitted = letter.fitted(DEAD_LETTER_MAX_BYTES)
    return Outgoing(topic, fitted.key, fitted.value, fitted.headers())


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def handled(
    processor: Processor,
    partition: int,
    messages: Sequence[Message],
    store: PartitionStore,
    now_ms: int,
) -> BatchResult:
    """One batch through a processor: its writes (not yet in the store) and outputs."""
    tx = PartitionTransaction(store)
    outgoing = processor.handle(partition, messages, tx, now_ms)
    return BatchResult(tx.writes(), outgoing)


def ticked(processor: Processor, partition: int, store: PartitionStore, now_ms: int) -> BatchResult:
    tx = PartitionTransaction(store)
    outgoing = processor.tick(partition, tx, now_ms)
    return BatchResult(tx.writes(), outgoing)


def dead_lettered(
    processor: Processor, partition: int, message: Message, reason: str, store: PartitionStore
) -> BatchResult:
    tx = PartitionTransaction(store)
    outgoing = processor.dead_letter(partition, message, reason, tx)
    return BatchResult(tx.writes(), outgoing)


@dataclass(frozen=True)
class RunnerConfig:
    name: str
    bootstrap_servers: str
    # Also names each partition's transactional producer: <group_id>-<partition>.
    group_id: str
    input_topic: str
    changelog_topic: str
    dead_letter_topic: str
    data_dir: Path
    batch_max_messages: int = 10_000
    batch_within_s: float = 0.05
    tick_interval_s: float = 1.0
    session_timeout_ms: int = 10_000
    # Ticks of a partition with input left to consume run on the input's clock (the newest
    # Kafka timestamp applied), the wall clock once it is caught up. For timeouts about what
    # producers sent: after an outage or a crash the wall clock has run on while the input
    # has not, and a wait would end before what it waits for is read.
    input_clock: bool = False
    # The memory budget its stores share with every other runner's of the process;
    # None: the process-wide default budget.
    store_resources: StoreResources | None = None


class PoisonError(Exception):
    """Applying these messages failed because of what they hold."""

    def __init__(self, reason: str, partitions: Sequence[int] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        # For a commit: the partitions whose records were refused.
        self.partitions = partitions


class RecordTooLargeError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Applied:
    result: BatchResult
    checkpoint: Checkpoint
    # The newest Kafka timestamp of the input it applies; -1: none (a tick).
    input_ms: int = -1


def tune_garbage_collector() -> None:
    """Collect young objects less often, and leave what start-up built out of collections.

    Process-wide and idempotent: every runner calls it before its first batch. The objects
    frozen are the worker's long-lived ones (modules, app, registry); a collection would
    only traverse them again and again.
    """
    if gc.get_threshold() != GC_THRESHOLDS:
        gc.set_threshold(*GC_THRESHOLDS)
        gc.freeze()


def reason_of(error: BaseException) -> str:
    """A dead letter's reason for an exception raised while applying its message."""
    return f"could not be applied: {type(error).__name__}: {error}"


class PartitionedRunner:
    """Runs a ``Processor`` over the partitions this process is assigned."""

    def __init__(
        self,
        config: RunnerConfig,
        processor: Processor,
        on_assignment: Callable[[set[int]], None] | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.processor = processor
        self._on_assignment = on_assignment
        self.stores: dict[int, PartitionStore] = {}
        self._consumer = Consumer(
            consumer_config(
                config.bootstrap_servers,
                config.group_id,
                **{
                    "session.timeout.ms": config.session_timeout_ms,
                    "heartbeat.interval.ms": max(500, config.session_timeout_ms // 5),
                    "fetch.wait.max.ms": 10,
                },
            )
        )
        self._outage = OutageLog(
            log, config.name, "Kafka", "batches are consumed again from the last checkpoint"
        )
        self._metrics = StageMetrics(config.name, config.input_topic, config.dead_letter_topic)
        self._transactions: dict[int, PartitionTransactions] = {}
        # Commits a batch's partitions side by side: each waits on the broker, not the CPU.
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix=f"{config.name}-txn")
        self._batch_started = 0.0  # time.monotonic() when the last batch was consumed
        self._behind_at = -math.inf  # time.monotonic() when a backlog was last seen
        # Per partition, the newest Kafka timestamp of the input committed since assignment.
        self._input_ms: dict[int, int] = {}
        self.ready = threading.Event()
        self._stop = threading.Event()

    # --- lifecycle ----------------------------------------------------------------

    def run(self) -> None:
        """Consume until ``stop()``; meant to run on a thread of its own."""
        tune_garbage_collector()
        try:
            self._consumer.subscribe(
                [self.config.input_topic], on_assign=self._assign, on_revoke=self._revoke,
                on_lost=self._revoke,
            )  # fmt: skip
            self._loop()
        finally:
            self._close()

    def stop(self) -> None:
        self._stop.set()

    def behind(self) -> bool:
        """Whether a backlog waits on the input: within the last ``BEHIND_WITHIN_S`` a
        batch filled ``batch_max_messages``, or left at least as many messages behind it.
        (Under a backlog a batch is not always full: it ends with its window when fetching
        lags.) Read from other threads, to give way to this runner: the bins stage emits
        less while the merge stage is behind."""
        return time.monotonic() - self._behind_at < BEHIND_WITHIN_S

    def _loop(self) -> None:
        next_tick = time.monotonic() + self.config.tick_interval_s
        while not self._stop.is_set():
            try:
                messages = self._next_batch(next_tick)
                if messages:
                    self._process(messages)
                if time.monotonic() >= next_tick:
                    self._tick()
                    next_tick = time.monotonic() + self.config.tick_interval_s
            except INFRASTRUCTURE as error:
                self._wait_out(error)

    def _wait_out(self, error: Exception) -> None:
        """Drop the uncommitted batch: consume it again from the checkpoints, later."""
        wait_s = self._outage.failed(error)
        for partition, store in self.stores.items():
            offset = store.checkpoint().next_input_offset
            position = offset if offset >= 0 else OFFSET_BEGINNING
            try:
                self._consumer.seek(TopicPartition(self.config.input_topic, partition, position))
            except KafkaException as seek_error:
                # Not fetching yet (just assigned): it starts at the checkpoint anyway.
                log.debug("%s[%d]: seek: %s", self.name, partition, seek_error)
        self._stop.wait(wait_s)

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
            if len(messages) >= limit:
                self._behind_at = self._batch_started
        return messages

    def _process(self, messages: list[Message]) -> None:
        started = time.perf_counter()
        batches = self._by_partition(messages)
        positions = self._positions(batches)
        applied: dict[int, _Applied] = {}
        poisoned: list[int] = []
        for partition, batch in batches.items():
            try:
                applied[partition] = self._apply(partition, batch, positions[partition])
            except PoisonError:
                poisoned.append(partition)
        handled = time.perf_counter()
        try:
            self._commit(applied)
        except PoisonError as refused:
            poisoned.extend(refused.partitions)  # one of their records was refused: find whose
        for partition in poisoned:
            self._isolate(partition, batches[partition], positions[partition])
        done = time.perf_counter()
        self._metrics.batch_handled(sum(map(len, batches.values())), done - started)
        self._record_lag(positions)
        if done - started > SLOW_BATCH_S:
            log.warning(
                "%s: slow batch of %d messages: handling %.0f ms, committing %.0f ms",
                self.name, len(messages), (handled - started) * 1000, (done - handled) * 1000,
            )  # fmt: skip

    def _by_partition(self, messages: list[Message]) -> dict[int, list[Message]]:
        """The batch's messages of each partition this runner still holds."""
        batches: dict[int, list[Message]] = defaultdict(list)
        for message in messages:
            error = message.error()
            if error is None:
                batches[message.partition()].append(message)
            elif error.code() != KafkaError._PARTITION_EOF:
                self._outage.failed(error)
        if batches:
            self._outage.succeeded()
        return {p: batch for p, batch in batches.items() if p in self.stores}

    def _positions(self, batches: dict[int, list[Message]]) -> dict[int, int]:
        """Where each partition's input goes on after the batch.

        Past the last message, and past the transaction markers behind it: Driftline's
        own messages on its input (forwards, continuations) are committed transactions,
        each followed by a marker that takes an offset. Committing the last message's
        offset + 1 would leave a lag of one forever.
        """
        topic = self.config.input_topic
        found = self._consumer.position([TopicPartition(topic, p) for p in batches])
        return {
            tp.partition: max(tp.offset, batches[tp.partition][-1].offset() + 1) for tp in found
        }

    def _apply(
        self, partition: int, batch: Sequence[Message], next_input: int | None = None
    ) -> _Applied:
        """The batch's result; ``PoisonError`` if applying it raised for what it holds."""
        store = self.stores[partition]
        try:
            result = handled(self.processor, partition, batch, store, wall_clock_ms())
            self._check_sizes(result)
        except INFRASTRUCTURE:
            raise
        except Exception as error:
            raise PoisonError(reason_of(error)) from error
        next_input = batch[-1].offset() + 1 if next_input is None else next_input
        # Only a runner on the input's clock reads the batch's timestamps.
        input_ms = max(m.timestamp()[1] for m in batch) if self.config.input_clock else -1
        return _Applied(result, store.checkpoint().following(next_input), input_ms)

    def _isolate(self, partition: int, batch: Sequence[Message], end: int) -> None:
        """Apply the batch in ever smaller parts until each poison message is alone, then
        dead-letter it: log2(batch) commits for one poison message, not one per message.
        The last part goes on at ``end``, the batch's position."""
        pending = [batch]
        while pending and partition in self.stores:
            part = pending.pop()
            next_input = end if part[-1] is batch[-1] else part[-1].offset() + 1
            try:
                self._commit({partition: self._apply(partition, part, next_input)})
                continue
            except PoisonError as poison:
                if len(part) > 1:
                    middle = len(part) // 2
                    pending += [part[middle:], part[:middle]]
                    continue
                reason = poison.reason
            log.warning(
                "%s[%d]: offset %d dead-lettered: %s", self.name, partition, part[0].offset(),
                reason,
            )  # fmt: skip
            self._commit_dead_letter(partition, part[0], reason, next_input)

    def _commit_dead_letter(
        self, partition: int, message: Message, reason: str, next_input: int
    ) -> None:
        store = self.stores[partition]
        checkpoint = store.checkpoint().following(next_input)
        try:
            result = dead_lettered(self.processor, partition, message, reason, store)
            self._check_sizes(result)
            self._commit({partition: _Applied(result, checkpoint)})
            return
        except INFRASTRUCTURE:
            raise
        except Exception as error:
            log.error("%s[%d]: the processor's dead letter failed: %s", self.name, partition, error)
        # The plainest dead letter there is, then (cut to fit if need be).
        letter = dead_letter_to(self.config.dead_letter_topic, DeadLetter.of(message, reason))
        bare = BatchResult(outgoing=[letter])
        try:
            self._commit({partition: _Applied(bare, checkpoint)})
        except PoisonError as refused:
            log.error(
                "%s[%d]: offset %d skipped: even its dead letter was refused (%s)",
                self.name, partition, message.offset(), refused.reason,
            )  # fmt: skip
            self._commit({partition: _Applied(BatchResult(), checkpoint)})

    def _check_sizes(self, result: BatchResult) -> None:
        """Refuse a record the broker would refuse, before anything is produced."""
        for write in result.writes:
            size = len(write.key) + (0 if write.value is None else len(write.value))
            if size > RECORD_MAX_BYTES:
                raise RecordTooLargeError(
                    _too_large(size, self.config.changelog_topic, RECORD_MAX_BYTES)
                )
        dead_letters = self.config.dead_letter_topic
        for out in result.outgoing:
            size = len(out.key or b"") + len(out.value or b"")
            limit = DEAD_LETTER_MAX_BYTES if out.topic == dead_letters else RECORD_MAX_BYTES
            if size > limit:
                raise RecordTooLargeError(_too_large(size, out.topic, limit))

    def _tick(self) -> None:
        started = time.perf_counter()
        wall_ms = wall_clock_ms()
        applied: dict[int, _Applied] = {}
        for partition, store in list(self.stores.items()):
            checkpoint = store.checkpoint()
            if checkpoint.next_input_offset < 0:
                continue  # nothing consumed, so nothing to time out
            now_ms = self._clock_ms(partition, checkpoint.next_input_offset, wall_ms)
            if now_ms is None:
                continue  # a backlog, and none of it applied yet: no time has passed
            try:
                result = ticked(self.processor, partition, store, now_ms)
                self._check_sizes(result)
            except INFRASTRUCTURE:
                raise
            except Exception:
                log.exception("%s[%d]: tick failed; retried next tick", self.name, partition)
                continue
            if result.writes or result.outgoing:
                next_input = checkpoint.next_input_offset
                applied[partition] = _Applied(result, checkpoint.following(next_input))
        try:
            self._commit(applied)
        except PoisonError as refused:
            log.error("%s: a tick's records were refused; retried next tick: %s", self.name,
                      refused.reason)  # fmt: skip
        self._record_lag({p: s.checkpoint().next_input_offset for p, s in self.stores.items()})
        if time.perf_counter() - started > SLOW_BATCH_S:
            log.warning("%s: slow tick: %.0f ms", self.name, (time.perf_counter() - started) * 1000)

    def _clock_ms(self, partition: int, next_input: int, wall_ms: int) -> int | None:
        """The time a tick of the partition runs at (see ``RunnerConfig.input_clock``)."""
        if not self.config.input_clock:
            return wall_ms
        tp = TopicPartition(self.config.input_topic, partition)
        try:
            _, end = self._consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException:
            end = -1  # not known while the broker is away: as if input were left
        if end >= 0 and next_input >= end:
            return wall_ms
        return self._input_ms.get(partition)

    def _record_lag(self, positions: Mapping[int, int]) -> None:
        """Each partition's lag at ``positions``, against the high watermark librdkafka
        last fetched (cached: no request to the broker); a batch's worth of it or more
        is a backlog (``behind``)."""
        topic = self.config.input_topic
        left = 0
        for partition, position in positions.items():
            tp = TopicPartition(topic, partition)
            try:
                _, end = self._consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue  # not known while the broker is away
            self._metrics.lag(partition, end, position)
            left += max(0, end - position)
        if left >= self.config.batch_max_messages:
            self._behind_at = time.monotonic()

    def _commit(self, applied: dict[int, _Applied]) -> None:
        """Each partition's part in its own transaction, side by side; then the stores of
        those that committed.

        ``NotCommittedError`` (an infrastructure error) if a partition's transaction did not
        commit: its input is consumed again. Otherwise ``PoisonError`` naming the
        partitions whose records were refused for what they hold.
        """
        if not applied:
            return
        items = list(applied.items())
        if len(items) == 1:
            failures = [self._commit_partition(*items[0])]
        else:
            failures = list(self._pool.map(lambda item: self._commit_partition(*item), items))
        committed = [(p, item) for (p, item), failure in zip(items, failures, strict=True)
                     if failure is None]  # fmt: skip
        for partition, item in committed:
            self.stores[partition].write(item.result.writes, item.checkpoint)
            self._metrics.committed(item.result.outgoing)
            if item.input_ms > self._input_ms.get(partition, -1):
                self._input_ms[partition] = item.input_ms
        if committed:
            self._outage.succeeded()
            self._commit_offsets(committed)
        not_committed = [f for f in failures if isinstance(f, NotCommittedError)]
        if not_committed:
            raise not_committed[0]
        refused = [(p, f) for (p, _), f in zip(items, failures, strict=True)
                   if isinstance(f, RecordRefusedError)]  # fmt: skip
        if refused:
            reason = f"the broker refused a record it produced: {refused[0][1]}"
            raise PoisonError(reason, [p for p, _ in refused])

    def _commit_partition(self, partition: int, item: _Applied) -> Exception | None:
        """One partition's transaction; the failure, if any, once it is aborted."""
        transactions = self._transactions.get(partition)
        if transactions is None or not transactions.start(self._stop):
            return NotCommittedError(f"partition {partition} has no producer (revoked, stopping)")
        changelog = self.config.changelog_topic
        try:
            transactions.begin()
            for write in item.result.writes:
                transactions.produce(changelog, write.key, write.value, partition=partition)
            transactions.produce(
                changelog, *checkpoint_record(item.checkpoint), partition=partition
            )
            for out in item.result.outgoing:
                transactions.produce(out.topic, out.key, out.value, out.headers, out.partition,
                                     out.timestamp)  # fmt: skip
            transactions.commit(self._stop)
        except KafkaException as error:
            return transactions.failed(error)
        return None

    def _commit_offsets(self, committed: list[tuple[int, _Applied]]) -> None:
        """The group's offsets, for lag monitoring: the checkpoints are the positions."""
        offsets = [
            TopicPartition(self.config.input_topic, partition, item.checkpoint.next_input_offset)
            for partition, item in committed
            if item.checkpoint.next_input_offset >= 0
        ]
        if offsets:
            try:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            except KafkaException as error:
                log.debug("%s: offsets not committed now: %s", self.name, error)

    # --- assignment -----------------------------------------------------------------

    def _assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        fresh = {
            tp.partition: PartitionTransactions(
                self.config.bootstrap_servers,
                f"{self.config.group_id}-{tp.partition}",
                self._outage,
            )
            for tp in partitions
        }
        # Fences the partitions' previous owners and aborts what they left open, so the
        # restore below reads everything they committed, and they can commit no more.
        list(self._pool.map(lambda t: t.start(self._stop), fresh.values()))
        self._transactions.update(fresh)
        restorer = ChangelogRestorer(
            self.config.bootstrap_servers, self.config.changelog_topic, self.config.store_resources
        )
        try:
            for tp in partitions:
                path = self.config.data_dir / self.config.name / str(tp.partition)
                store = restorer.open(tp.partition, path)
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
            self._input_ms.pop(tp.partition, None)
            self._metrics.forget(tp.partition)
            store = self.stores.pop(tp.partition, None)
            if store is not None:
                store.close()
            transactions = self._transactions.pop(tp.partition, None)
            if transactions is not None:
                transactions.close()
        self._notify_assignment()

    def _notify_assignment(self) -> None:
        if self._on_assignment is not None:
            self._on_assignment(set(self.stores))

    def _close(self) -> None:
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as error:
            log.warning("%s: closing consumer: %s", self.config.name, error)
        for store in self.stores.values():
            store.close()
        self.stores.clear()
        for transactions in self._transactions.values():
            transactions.close()
        self._transactions.clear()
        self._pool.shutdown(wait=False)


def _too_large(size: int, topic: str, limit: int) -> str:
    return (
        f"it would write a record of {size:,} bytes to {topic}, over the limit of "
        f"{limit:,} bytes per record"
    )
