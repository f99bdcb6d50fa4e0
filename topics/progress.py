"""How far a consumer group has come through a topic (lag), from committed offsets; and
how far each stage of the pipeline has come (``ProgressReader``, for ``GET /v1/status``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from driftline.topics.catalog import Topics, TopicSettings
from driftline.topics.clients import consumer_config
from driftline.topics.offsets import watermarks
from driftline.topics.waiting import wait_until


class GroupProgress:
    def __init__(self, bootstrap_servers: str, group_id: str, topic: str, partitions: int):
        self._consumer = Consumer(
            consumer_config(
                bootstrap_servers,
                # Only reads the group's commits; never subscribes, so never joins it.
                group_id,
                # The last stable commit: a read-committed reader would wait out (or time
                # out on) the open transaction of a worker killed mid-batch.
                **{"isolation.level": "read_uncommitted"},
            )
        )
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]

    def committed(self) -> int:
        """Messages the group has committed, summed over partitions."""
        found = self._consumer.committed(self._partitions, timeout=10)
        return sum(max(tp.offset, 0) for tp in found)

    def end(self) -> int:
        return sum(watermarks(self._consumer, tp)[1] for tp in self._partitions)

    def lag(self) -> int:
        return self.end() - self.committed()

    def wait_caught_up(self, timeout_s: float = 120) -> None:
        wait_until(lambda: self.lag() <= 0, timeout_s=timeout_s, what="consumer group to catch up",
                   interval_s=0.1)  # fmt: skip

    def close(self) -> None:
        self._consumer.close()


def merge_progress(settings: TopicSettings) -> GroupProgress:
    """Progress of the merge agent through the ingest topic."""
    topics = Topics.for_settings(settings)
    return GroupProgress(
        settings.bootstrap_servers,
        topics.merge_group,
        topics.ingest.name,
        settings.ingest_partitions,
    )


# --- the pipeline's progress, stage by stage (``GET /v1/status``) --------------------------


@dataclass(frozen=True, slots=True)
class StageProgress:
    """How far one stage has applied its input topic, at one moment."""

    stage: str
    topic: str
    # Offsets between what the stage has applied and the topic's end, summed over
    # partitions. A transaction's commit marker takes an offset too, so a stage that is
    # done may show a small lag: ``caught_up`` is the answer that counts.
    lag: int
    # No message of the topic is waiting for the stage (markers aside).
    caught_up: bool
    # The topic's end offsets it was compared with.
    ends: Mapping[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The public part (without the end offsets)."""
        return {"stage": self.stage, "topic": self.topic, "lag": self.lag,
                "caught_up": self.caught_up}  # fmt: skip


def pending_partitions(
    ends: Mapping[int, int],
    applied: Mapping[int, int | None],
    has_messages: Callable[[int, int, int], bool],
) -> list[int]:
    """Partitions with a message in [applied, end): only those behind their end are read,
    since offsets alone cannot tell a waiting message from a transaction marker."""
    return [
        partition
        for partition, end in sorted(ends.items())
        if (applied.get(partition) or 0) < end
        and has_messages(partition, applied.get(partition) or 0, end)
    ]


# Messages a status request looks at, at most, for copies of messages it must wait for.
COPIES_SCANNED = 100_000


def copies_to_wait_for(
    found: list[tuple[int, int, str]], since: Mapping[int, int]
) -> dict[int, int]:
    """Of the copies (partition, offset, "source partition:source offset") appended after
    ``since``, those of messages before ``since``: per partition, the offset past the last."""
    needed: dict[int, int] = {}
    for partition, offset, origin in found:
        source, _, source_offset = origin.partition(":")
        try:
            before = int(source_offset) < since.get(int(source), 0)
        except ValueError:
            continue  # a header this pipeline did not write
        if before:
            needed[partition] = max(needed.get(partition, 0), offset + 1)
    return needed


class ProgressReader:
    """Reads end offsets, a group's committed offsets, and whether messages wait."""

    def __init__(self, bootstrap_servers: str) -> None:
        self._bootstrap = bootstrap_servers
        # Reads committed messages only (``consumer_config``): an open or aborted
        # transaction holds nothing a stage could have applied yet; and below the low
        # watermark (retention) it reads from there, not from the end.
        self._reader = Consumer(
            consumer_config(
                bootstrap_servers,
                f"driftline-status-{uuid.uuid4()}",
                **{"enable.partition.eof": True},
            )
        )

    def ends(self, topic: str, partitions: int) -> dict[int, int]:
        return {p: watermarks(self._reader, TopicPartition(topic, p))[1] for p in range(partitions)}

    def records(self, topic: str, partitions: int) -> int:
        """The records a topic holds (written without transactions: no markers among them)."""
        found = 0
        for p in range(partitions):
            low, high = watermarks(self._reader, TopicPartition(topic, p))
            found += high - low
        return found

    def committed(self, group_id: str, topic: str, partitions: int) -> dict[int, int | None]:
        """The group's committed offsets (None: nothing committed yet)."""
        consumer = Consumer(consumer_config(self._bootstrap, group_id))
        try:
            found = consumer.committed(
                [TopicPartition(topic, p) for p in range(partitions)], timeout=10
            )
        finally:
            consumer.close()
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in found}

    def has_messages(self, topic: str, partition: int, start: int, end: int) -> bool:
        """Whether a committed message lies in [start, end) of the partition."""
        with closing(self._messages(topic, partition, start)) as messages:
            try:
                first = next(messages, None)
            except TimeoutError:
                return True  # no answer: assume something waits rather than claim it is final
        return first is not None and int(first.offset() or 0) < end

    def stage(
        self,
        stage: str,
        topic: str,
        partitions: int,
        applied_offsets: Callable[[], Mapping[int, int | None]],
    ) -> StageProgress:
        """A stage's progress through ``topic``. The ends are read first, then what the
        stage has applied: caught up then means every message before the ends is."""
        ends = self.ends(topic, partitions)
        applied = applied_offsets()
        lag = sum(max(0, end - (applied.get(p) or 0)) for p, end in ends.items())
        waiting = pending_partitions(
            ends, applied, lambda p, start, end: self.has_messages(topic, p, start, end)
        )
        return StageProgress(stage, topic, lag, not waiting, ends)

    def copies_since(
        self, topic: str, partitions: int, since: Mapping[int, int], header: str
    ) -> dict[int, int] | None:
        """Per partition, the offset just past the last message appended since ``since``
        that is a copy (``header``: "partition:offset" of the original) of a message
        before ``since``: a stage done with the messages before ``since`` is done only
        once it is past those copies too. None when too many messages arrived since to
        look at them all (then nothing can be said)."""
        ends = self.ends(topic, partitions)
        found: list[tuple[int, int, str]] = []
        budget = COPIES_SCANNED
        for partition in range(partitions):
            start, end = since.get(partition, 0), ends[partition]
            if start >= end:
                continue
            if end - start > budget:
                return None
            budget -= end - start
            copies = self._origins(topic, partition, start, end, header)
            found += [(partition, offset, origin) for offset, origin in copies]
        return copies_to_wait_for(found, since)

    def _origins(
        self, topic: str, partition: int, start: int, end: int, header: str
    ) -> Iterator[tuple[int, str]]:
        """(offset, header value) of the messages in [start, end) that carry ``header``."""
        with closing(self._messages(topic, partition, start)) as messages:
            for message in messages:
                offset = int(message.offset() or 0)
                found = [v for k, v in message.headers() or [] if k == header and v]
                if found:
                    yield offset, found[-1].decode()
                if offset + 1 >= end:
                    return

    def _messages(self, topic: str, partition: int, start: int) -> Generator[Message]:
        """The partition's committed messages from ``start`` to its end; TimeoutError when
        the broker does not get there within 10 s. Close it (``closing``) to unassign."""
        self._reader.assign([TopicPartition(topic, partition, start)])
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                message = self._reader.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is None:
                    yield message
                elif error.code() == KafkaError._PARTITION_EOF:
                    return
            raise TimeoutError(f"{topic} partition {partition} did not answer in time")
        finally:
            self._reader.unassign()

    def close(self) -> None:
        self._reader.close()
