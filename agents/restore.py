"""Bringing a partition's local store level with its changelog.

Every committed batch ends, in the same transaction, with a checkpoint record: its next
input offset and its sequence number (the record format: ``topics.changelog``). A store
whose own checkpoint equals the last one in the changelog is current; any other store
(missing, behind after a crash between the commit and the local write, or stale after
another worker held the partition) is rebuilt from the whole committed changelog.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from driftline.state.store import Checkpoint, PartitionStore, StoreResources
from driftline.topics.changelog import checkpoint_of
from driftline.topics.clients import consumer_config
from driftline.topics.offsets import watermarks

log = logging.getLogger(__name__)

# Records read back from a changelog's end to find its last checkpoint, at first.
_TAIL_RECORDS = 1000


class ChangelogRestorer:
    def __init__(
        self, bootstrap_servers: str, topic: str, resources: StoreResources | None = None
    ) -> None:
        self._topic = topic
        self._resources = resources
        self._consumer = Consumer(
            consumer_config(
                bootstrap_servers, f"{topic}-restorer", **{"enable.partition.eof": True}
            )
        )

    def open(self, partition: int, path: Path) -> PartitionStore:
        """The partition's store, restored unless its checkpoint is the changelog's last."""
        store = PartitionStore(path, self._resources)
        local = store.checkpoint()
        last = self._last_checkpoint(partition)
        if local == (last or Checkpoint()):
            return store
        log.info(
            "%s[%d]: local store at %s, changelog at %s: restoring",
            self._topic, partition, local, last,
        )  # fmt: skip
        store.close()
        shutil.rmtree(path, ignore_errors=True)
        store = PartitionStore(path, self._resources)
        self._replay(partition, store)
        return store

    def _last_checkpoint(self, partition: int) -> Checkpoint | None:
        """The newest committed checkpoint: a transaction ends with it, so it is among the
        last records (unless aborted batches follow it, hence the widening look back)."""
        low, high = watermarks(self._consumer, TopicPartition(self._topic, partition))
        span = _TAIL_RECORDS
        while high > low:
            start = max(low, high - span)
            found: Checkpoint | None = None
            for key, value in self._read(partition, start):
                checkpoint = checkpoint_of(key, value)
                if checkpoint is not None:
                    found = checkpoint
            if found is not None or start == low:
                return found
            span *= 16
        return None

    def _replay(self, partition: int, store: PartitionStore) -> None:
        """Apply the committed changelog in whole batches, each closed by its checkpoint.

        Compaction may have dropped older checkpoint records (only the newest per key
        stays): the records of such a batch are then applied with the next checkpoint
        that remains, which is as good, since later batches rewrite what they touched.
        """
        low, high = watermarks(self._consumer, TopicPartition(self._topic, partition))
        if high <= low:
            return
        pending: list[tuple[bytes, bytes | None]] = []
        applied = 0
        for key, value in self._read(partition, OFFSET_BEGINNING):
            checkpoint = checkpoint_of(key, value)
            if checkpoint is not None:
                store.write_raw(pending, checkpoint)
                applied += len(pending)
                pending = []
            elif key is not None:
                pending.append((key, value))
        if pending:
            # Committed transactions always end with their checkpoint; records after the
            # last one would mean a writer outside this engine.
            log.warning(
                "%s[%d]: ignored %d changelog records after the last checkpoint",
                self._topic, partition, len(pending),
            )  # fmt: skip
        log.info("%s[%d]: restored %d records", self._topic, partition, applied)

    def _read(self, partition: int, start: int) -> Iterator[tuple[bytes | None, bytes | None]]:
        """Committed (key, value) pairs from ``start`` to the end of the partition."""
        self._consumer.assign([TopicPartition(self._topic, partition, start)])
        try:
            done = False
            while not done:
                for message in self._consumer.consume(10_000, 1.0):
                    error = message.error()
                    if error is None:
                        yield message.key(), message.value()
                    elif error.code() == KafkaError._PARTITION_EOF:
                        done = True
        finally:
            self._consumer.unassign()

    def close(self) -> None:
        self._consumer.close()
