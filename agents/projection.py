"""The projection engine: a compacted topic mirrored into a store that keeps its own markers.

Kafka's compacted topic is the truth; a projection's store (Redis, PostgreSQL) is a view
of it, rebuilt by replaying the topic. The store itself records how far it holds each
partition: its marker is the next offset whose records it lacks, written in the same
transaction as the records (``ProjectionSink.write``). The engine resumes from those
markers, not from the group's committed offsets (committed only for lag monitoring),
and a marker that is missing or behind what this process wrote means the store lost
writes (wiped, restored from an older snapshot, its tables dropped): the partition is
projected again from the marker, or from the beginning of the compacted topic
(tombstones delete). The markers are checked every second, so a store wiped while no
record flows is noticed too.

A store's errors never end a projection: an outage (``sink.outage_errors``) pauses its
partitions, is waited out with a backoff (``OutageLog``) and the partitions resume from
the markers once it answers. A record the store refuses (``RefusedError``: a value it cannot
hold, a document it cannot read) is isolated by halving the batch, dead-lettered with
its reason, and passed over: never a stuck projection.

Each projection runs on a thread of its own with its own consumer, so a slow or absent
store holds back nothing upstream.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from driftline.agents.runtime import Outgoing
from driftline.agents.stage_metrics import StageMetrics
from driftline.topics.clients import consumer_config
from driftline.topics.dead_letters import DeadLetter
from driftline.topics.outages import OutageLog
from driftline.topics.service_metrics import PROJECTION_DELAY

log = logging.getLogger(__name__)


# A wiped or replaced store with no traffic is noticed within this interval.
CHECK_MARKERS_EVERY_S = 1.0


class RefusedError(Exception):
    """The store refuses something in a batch (never an outage); the message is the
    reason its dead letter carries (its kind, ``topics.dead_letters.reason_kind``, labels
    the dead letters metric)."""


class ProjectionSink(Protocol):
    """A store a projection writes: its records and, with them, its markers."""

    # Who is waited for in the outage log ("Redis", "PostgreSQL").
    dependency: str
    # The errors that mean the store is unreachable (waited out, never a dead letter).
    outage_errors: tuple[type[BaseException], ...]

    def markers(self, partitions: Sequence[int]) -> dict[int, int | None]:
        """The next offset of each partition the store lacks; None: it holds none."""

    def set_marker(self, partition: int, offset: int) -> None:
        """Record that the store holds ``partition`` up to ``offset`` (a resumed partition)."""

    def write(self, messages: Sequence[Message], ends: Mapping[int, int]) -> dict[int, int | None]:
        """Write ``messages`` and move each partition's marker to ``ends``, atomically;
        returns the markers as they were before (read in the same transaction), or raises
        ``RefusedError`` having written nothing."""


def lost_writes(marker: int | None, written: int) -> bool:
    """Whether the store holds less of a partition than this process wrote there: wiped
    (no marker), or restored from an older snapshot (an older marker)."""
    return marker is None or marker < written


def resume_offset(marker: int | None) -> int:
    """Where to read a partition from so that the store gets everything it lacks."""
    return marker if marker is not None and marker > 0 else OFFSET_BEGINNING


def halves(items: Sequence[Message]) -> tuple[Sequence[Message], Sequence[Message]]:
    """A refused batch split in two, in order (the second half is written after the first,
    so that the last record of a key still wins)."""
    middle = len(items) // 2
    return items[:middle], items[middle:]


def partition_ends(messages: Iterable[Message]) -> dict[int, int]:
    """Each partition's next offset after ``messages``."""
    return {message.partition(): message.offset() + 1 for message in messages}


class Projection:
    """Consumes a topic and mirrors it into ``sink``, resuming from the sink's markers.

    State, all on the runner's thread: ``_written`` maps each partition being projected to
    the next offset the store holds (as far as this process knows); ``_unverified`` holds
    the assigned partitions that wait, paused, for their marker to be read (just assigned,
    or the store failed). librdkafka refuses to seek a partition in the rebalance callback,
    so the callback only pauses them and the loop seeks once their marker is known.
    """

    def __init__(
        self,
        name: str,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        sink: ProjectionSink,
        session_timeout_ms: int,
        *,
        dead_letter_topic: str | None = None,
        emitted_at_ms: Callable[[bytes], int | None] | None = None,
        delay_label: str = "",
        check_markers_every_s: float = CHECK_MARKERS_EVERY_S,
    ) -> None:
        """``emitted_at_ms`` reads when a record was emitted, for the projection delay
        metric (labelled ``delay_label``); ``dead_letter_topic`` receives what the sink
        refuses."""
        self.name = name
        self._bootstrap_servers = bootstrap_servers
        self._topic = topic
        self._sink = sink
        self._consumer = Consumer(
            consumer_config(
                bootstrap_servers,
                group_id,
                **{
                    "fetch.wait.max.ms": 10,
                    # librdkafka's default (45 s) would leave a dead worker's partitions
                    # unserved that long after a crash.
                    "session.timeout.ms": session_timeout_ms,
                    "heartbeat.interval.ms": max(500, session_timeout_ms // 5),
                },
            )
        )
        self._dead_letter_topic = dead_letter_topic
        self._producer: Producer | None = None
        self._metrics = StageMetrics(name, topic, dead_letter_topic or "")
        self._emitted_at_ms = emitted_at_ms
        self._delay_label = delay_label
        self._check_every_s = check_markers_every_s
        self._written: dict[int, int] = {}
        self._unverified: set[int] = set()
        self._outage = OutageLog(log, name, sink.dependency, "new records wait in Kafka meanwhile")
        self._retry_at = 0.0
        self._next_check = 0.0
        self._stop = threading.Event()

    def run(self) -> None:
        self._consumer.subscribe(
            [self._topic], on_assign=self._assigned, on_revoke=self._revoked,
            on_lost=self._revoked,
        )  # fmt: skip
        try:
            while not self._stop.is_set():
                self._step()
        finally:
            try:
                self._consumer.close()
            except KafkaException as error:
                log.warning("%s: closing consumer: %s", self.name, error)
            if self._producer is not None:
                self._producer.flush(10)

    def stop(self) -> None:
        self._stop.set()

    def _step(self) -> None:
        now = time.monotonic()
        if now >= self._retry_at and (self._unverified or now >= self._next_check):
            self._next_check = now + self._check_every_s
            self._with_store(self._check_markers)
            self._record_lag()
        # The first message ends the wait, and the rest already fetched join it:
        # consume(1000, 0.05) would hold every record until its 50 ms were over.
        messages = self._consumer.consume(1, 0.05)
        if messages:
            messages.extend(self._consumer.consume(999, 0))
            if time.monotonic() >= self._retry_at:
                self._with_store(lambda: self._project(messages))
            # else: the store is down and these came from a buffer; the seek to the
            # marker once it is back reads them again.

    def _with_store(self, action: Callable[[], bool]) -> None:
        """Run ``action`` (True: it reached the store); on an outage (of the store, or of
        the broker a dead letter goes to) pause every partition and wait it out."""
        try:
            reached = action()
        except (*self._sink.outage_errors, KafkaException) as error:
            self._retry_at = time.monotonic() + self._outage.failed(error)
            self._suspend()
        else:
            if reached:
                self._outage.succeeded()

    def _suspend(self) -> None:
        """Stop consuming until the markers can be read again (what the store holds is
        unknown)."""
        self._unverified.update(self._written)
        self._written.clear()
        self._pause(self._unverified)

    # --- markers ------------------------------------------------------------------

    def _check_markers(self) -> bool:
        partitions = sorted(self._unverified | set(self._written))
        if not partitions:
            return False
        for partition, marker in self._sink.markers(partitions).items():
            written = self._written.get(partition)
            if written is None or lost_writes(marker, written):
                self._resume_from(partition, marker, written)
        return True

    def _resume_from(self, partition: int, marker: int | None, written: int | None) -> None:
        """Project ``partition`` from what the store holds of it (``marker``) onwards."""
        store = self._sink.dependency
        if written is not None and marker is None:
            log.warning(
                "%s: %s lost %s partition %d (wiped or replaced): projecting it again from "
                "the beginning", self.name, store, self._topic, partition,
            )  # fmt: skip
        elif written is not None:
            log.warning(
                "%s: %s lost %s partition %d after offset %d (%d were written): projecting "
                "it again from there", self.name, store, self._topic, partition, marker, written,
            )  # fmt: skip
        elif marker is None:
            log.info("%s: %s partition %d not in %s: projecting it from the beginning",
                     self.name, self._topic, partition, store)  # fmt: skip
        tp = TopicPartition(self._topic, partition, resume_offset(marker))
        try:
            self._consumer.seek(tp)
        except KafkaException as error:
            # A partition assigned a moment ago cannot be sought yet: try again shortly.
            log.debug("%s: seek %d: %s", self.name, partition, error)
            self._written.pop(partition, None)
            self._unverified.add(partition)
            self._pause([partition])
            return
        # The store now says what it holds (a batch that found the marker behind has
        # already moved it on): a restart resumes here too.
        self._sink.set_marker(partition, marker or 0)
        self._written[partition] = marker or 0
        self._unverified.discard(partition)
        self._consumer.resume([TopicPartition(self._topic, partition)])

    # --- projecting -----------------------------------------------------------------

    def _project(self, messages: list[Message]) -> bool:
        """Write the batch's records of the partitions being projected; the markers read
        in the same transaction tell whether the store still held what this process
        wrote before: if not (wiped or restored in between), the partition is projected
        again from what the store holds."""
        wanted = [
            message
            for message in messages
            if message.error() is None and message.partition() in self._written
        ]
        if not wanted:
            return False
        started = time.monotonic()
        self._write_isolating(wanted)
        self._metrics.batch_handled(len(wanted), time.monotonic() - started)
        self._observe_delay(wanted)
        return True

    def _write_isolating(self, messages: Sequence[Message]) -> None:
        """Write ``messages``; a refused batch is halved until the refused record is alone,
        and that one is dead-lettered while its partition's marker moves past it."""
        try:
            self._written_through(messages, self._sink.write(messages, partition_ends(messages)))
        except RefusedError as refusal:
            if len(messages) > 1:
                for half in halves(messages):
                    self._write_isolating(half)
                return
            (message,) = messages
            self._dead_letter(message, refusal)
            self._written_through(messages, self._sink.write([], partition_ends(messages)))

    def _written_through(
        self, messages: Sequence[Message], before: Mapping[int, int | None]
    ) -> None:
        """Move ``_written`` to the batch's ends, or resume a partition the store lost."""
        committed = []
        for partition, end in partition_ends(messages).items():
            written = self._written.get(partition)
            if written is None:
                continue  # resumed by an earlier part of this batch
            if lost_writes(before[partition], written):
                self._resume_from(partition, before[partition], written)
            else:
                self._written[partition] = end
                committed.append(TopicPartition(self._topic, partition, end))
        if committed:
            # For lag monitoring only: the markers say where to resume.
            try:
                self._consumer.commit(offsets=committed, asynchronous=True)
            except KafkaException as error:
                log.debug("%s: commit: %s", self.name, error)

    def _dead_letter(self, message: Message, refusal: RefusedError) -> None:
        if self._dead_letter_topic is None:
            raise RuntimeError(f"{self.name}: refused with no dead-letter topic: {refusal}")
        log.warning("%s: dead-lettering %s partition %d offset %d: %s", self.name,
                    self._topic, message.partition(), message.offset(), refusal)  # fmt: skip
        if self._producer is None:
            self._producer = Producer({"bootstrap.servers": self._bootstrap_servers,
                                       "enable.idempotence": True})  # fmt: skip
        letter = DeadLetter.of(message, str(refusal))
        out = Outgoing(self._dead_letter_topic, letter.key, letter.value, letter.headers())
        failures: list[object] = []
        self._producer.produce(
            out.topic, out.value, out.key, headers=out.headers,
            on_delivery=lambda error, _: failures.append(error) if error else None,
        )  # fmt: skip
        if self._producer.flush(30) > 0 or failures:
            # Waited out like an outage of the store: the marker stays before the record.
            raise KafkaException(f"dead letter not delivered: {failures or 'timed out'}")
        self._metrics.committed([out])

    # --- metrics ---------------------------------------------------------------------

    def _observe_delay(self, messages: Sequence[Message]) -> None:
        """From each record's emission to now, its write into the store."""
        if self._emitted_at_ms is None:
            return
        now_ms = time.time() * 1000
        histogram = PROJECTION_DELAY.labels(self._delay_label)
        for message in messages:
            value = message.value()
            emitted = None if value is None else self._emitted_at_ms(value)
            if emitted is not None:
                histogram.observe(max(0.0, now_ms - emitted) / 1000)

    def _record_lag(self) -> None:
        """Each projected partition's lag: the high watermark the consumer last fetched
        (cached: no request to the broker) minus its position."""
        partitions = [TopicPartition(self._topic, p) for p in sorted(self._written)]
        if not partitions:
            return
        try:
            for tp in self._consumer.position(partitions):
                _, end = self._consumer.get_watermark_offsets(tp, cached=True)
                self._metrics.lag(tp.partition, end, tp.offset)
        except KafkaException as error:
            log.debug("%s: lag: %s", self.name, error)

    # --- assignment ----------------------------------------------------------------

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        consumer.pause(partitions)
        self._unverified.update(tp.partition for tp in partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._written.pop(tp.partition, None)
            self._unverified.discard(tp.partition)
            self._metrics.forget(tp.partition)

    def _pause(self, partitions: Iterable[int]) -> None:
        wanted = [TopicPartition(self._topic, p) for p in partitions]
        if wanted:
            self._consumer.pause(wanted)
