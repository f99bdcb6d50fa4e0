"""Stage 3: the metrics topic projected into Redis, for dashboards and the API.

Kafka's compacted metrics topic is the truth; Redis is a view of it, rebuilt by
replaying the topic through ``topics.redis_bins`` (one key per model and hour, a sorted
set of hours per model; the API reads the same layout). Writes are idempotent (a replay
rewrites the same values in the same order).

Redis may go away, come back empty (FLUSHALL, a new server) or come back older (a
restart that lost its last second). So Redis itself records how far it holds each
metrics partition: its marker (``RedisKeys.projected``) is the next offset whose bins it
lacks, written in the same MULTI/EXEC as the bins. The projection resumes from that
marker, not from the group's committed offsets (committed only for lag monitoring), and
a marker that is missing or behind what this process wrote means Redis lost bins: the
partition is projected again from the marker, or from the beginning of the compacted
topic (tombstones delete). Redis errors never end the projection: it pauses its
partitions, waits with a backoff and resumes once Redis answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from driftline.topics.clients import consumer_config
from driftline.topics.outages import OutageLog
from driftline.topics.redis_bins import RedisBins, marker_offset

log = logging.getLogger(__name__)


# A wiped or replaced Redis with no traffic is noticed within this interval.
CHECK_MARKERS_EVERY_S = 1.0


def lost_writes(marker: int | None, written: int) -> bool:
    """Whether Redis holds less of a partition than this process wrote there: wiped
    (no marker), or restored from an older snapshot (an older marker)."""
    return marker is None or marker < written


def resume_offset(marker: int | None) -> int:
    """Where to read a partition from so that Redis gets everything it lacks."""
    return marker if marker is not None and marker > 0 else OFFSET_BEGINNING


class RedisProjection:
    """Consumes the metrics topic and mirrors it into Redis, resuming from Redis's markers.

    State, all on the runner's thread: ``_written`` maps each partition being projected to
    the next offset Redis holds (as far as this process knows); ``_unverified`` holds the
    assigned partitions that wait, paused, for their marker to be read (just assigned, or
    Redis failed). librdkafka refuses to seek a partition in the rebalance callback, so
    the callback only pauses them and the loop seeks once their marker is known.
    """

    def __init__(
        self,
        name: str,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        bins: RedisBins,
        session_timeout_ms: int,
        check_markers_every_s: float = CHECK_MARKERS_EVERY_S,
    ) -> None:
        self.name = name
        self._topic = topic
        self._bins = bins
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
        self._check_every_s = check_markers_every_s
        self._written: dict[int, int] = {}
        self._unverified: set[int] = set()
        self._outage = OutageLog(log, name, "Redis", "new bins wait in Kafka meanwhile")
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

    def stop(self) -> None:
        self._stop.set()

    def _step(self) -> None:
        now = time.monotonic()
        if now >= self._retry_at and (self._unverified or now >= self._next_check):
            self._next_check = now + self._check_every_s
            self._with_redis(self._check_markers)
        # The first message ends the wait, and the rest already fetched join it:
        # consume(1000, 0.05) would hold every bin until its 50 ms were over.
        messages = self._consumer.consume(1, 0.05)
        if messages:
            messages.extend(self._consumer.consume(999, 0))
            if time.monotonic() >= self._retry_at:
                self._with_redis(lambda: self._project(messages))
            # else: Redis is down and these came from a buffer; the seek to the marker
            # once Redis is back reads them again.

    def _with_redis(self, action: Callable[[], bool]) -> None:
        """Run ``action`` (True: it reached Redis); on a Redis error pause every partition
        and wait it out."""
        try:
            reached = action()
        except redis.RedisError as error:
            self._retry_at = time.monotonic() + self._outage.failed(error)
            self._suspend()
        else:
            if reached:
                self._outage.succeeded()

    def _suspend(self) -> None:
        """Stop consuming until the markers can be read again (what Redis holds is unknown)."""
        self._unverified.update(self._written)
        self._written.clear()
        self._pause(self._unverified)

    # --- markers ------------------------------------------------------------------

    def _check_markers(self) -> bool:
        partitions = sorted(self._unverified | set(self._written))
        if not partitions:
            return False
        for partition, marker in self._bins.markers(partitions).items():
            written = self._written.get(partition)
            if written is None or lost_writes(marker, written):
                self._resume_from(partition, marker, written)
        return True

    def _resume_from(self, partition: int, marker: int | None, written: int | None) -> None:
        """Project ``partition`` from what Redis holds of it (``marker``) onwards."""
        if written is not None and marker is None:
            log.warning("%s: Redis lost metrics partition %d (wiped or replaced): projecting "
                        "it again from the beginning", self.name, partition)  # fmt: skip
        elif written is not None:
            log.warning(
                "%s: Redis lost metrics partition %d after offset %d (%d were written): "
                "projecting it again from there", self.name, partition, marker, written,
            )  # fmt: skip
        elif marker is None:
            log.info("%s: metrics partition %d not in Redis: projecting it from the beginning",
                     self.name, partition)  # fmt: skip
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
        # Redis now says what it holds (a batch that found the marker behind has already
        # moved it on): a restart resumes here too.
        self._bins.client.set(self._bins.keys.projected(partition), marker or 0)
        self._written[partition] = marker or 0
        self._unverified.discard(partition)
        self._consumer.resume([TopicPartition(self._topic, partition)])

    # --- projecting -----------------------------------------------------------------

    def _project(self, messages: list[Message]) -> bool:
        """One MULTI/EXEC: read the markers, write the bins, move the markers on.

        The markers read in the same transaction tell whether Redis still held what this
        process wrote before; if not (wiped or restored in between), the partition is
        projected again from what Redis holds.
        """
        ends: dict[int, int] = {}
        writes: list[tuple[str, int, bytes | None]] = []
        for message in messages:
            partition = message.partition()
            if message.error() is not None or partition not in self._written:
                continue
            ends[partition] = message.offset() + 1
            located = _bin_of(message.key())
            if located is not None:
                writes.append((*located, message.value()))
        if not ends:
            return False
        partitions = sorted(ends)
        pipe = self._bins.client.pipeline(transaction=True)
        for partition in partitions:
            pipe.get(self._bins.keys.projected(partition))
        for model, hour, value in writes:
            self._bins.write(pipe, model, hour, value)
        for partition in partitions:
            pipe.set(self._bins.keys.projected(partition), ends[partition])
        results = pipe.execute()
        committed = []
        for partition, raw in zip(partitions, results, strict=False):
            before = marker_offset(raw)
            if lost_writes(before, self._written[partition]):
                self._resume_from(partition, before, self._written[partition])
            else:
                self._written[partition] = ends[partition]
                committed.append(TopicPartition(self._topic, partition, ends[partition]))
        if committed:
            # For lag monitoring only: the markers say where to resume.
            try:
                self._consumer.commit(offsets=committed, asynchronous=True)
            except KafkaException as error:
                log.debug("%s: commit: %s", self.name, error)
        return True

    # --- assignment ----------------------------------------------------------------

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)
        consumer.pause(partitions)
        self._unverified.update(tp.partition for tp in partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._written.pop(tp.partition, None)
            self._unverified.discard(tp.partition)

    def _pause(self, partitions: Iterable[int]) -> None:
        wanted = [TopicPartition(self._topic, p) for p in partitions]
        if wanted:
            self._consumer.pause(wanted)


def _bin_of(key: bytes | None) -> tuple[str, int] | None:
    """(model, hour) of a metrics key ``project/model/<hour>``; None for a foreign key."""
    if key is None:
        return None
    model, _, hour = key.decode(errors="replace").rpartition("/")
    return (model, int(hour)) if model and hour.isdigit() else None
