"""Bringing a partition's local store level with its changelog.

Every committed batch ends, in the same transaction, with a checkpoint record (its next
input offset and its sequence number) and commits the same pair as the consumer group's
input offset (the sequence in the offset's metadata). A store whose own checkpoint equals
the group's is current; any other store (missing, behind after a crash between the
commit and the local write, or stale after another worker held the partition) is rebuilt
from the whole committed changelog.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from state.store import Checkpoint, PartitionStore
from topics.clients import consumer_config

log = logging.getLogger(__name__)

# Changelog key of the record that carries a batch's checkpoint.
CHECKPOINT_KEY = b"\x00input"


def committed_checkpoint(committed: TopicPartition) -> Checkpoint | None:
    """The checkpoint a consumer group's committed input offset carries, if any."""
    if committed.offset < 0 or not committed.metadata:
        return None
    try:
        return Checkpoint(committed.offset, int(committed.metadata))
    except ValueError:
        return None


class ChangelogRestorer:
    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._topic = topic
        self._consumer = Consumer(
            consumer_config(
                bootstrap_servers, f"{topic}-restorer", **{"enable.partition.eof": True}
            )
        )

    def open(self, partition: int, path: Path, committed: Checkpoint | None) -> PartitionStore:
        """The partition's store, restored unless its checkpoint is the committed one."""
        store = PartitionStore(path)
        local = store.checkpoint()
        if committed is not None and local == committed:
            return store
        log.info(
            "%s[%d]: local store at %s, committed %s: restoring from the changelog",
            self._topic, partition, local, committed,
        )  # fmt: skip
        store.close()
        shutil.rmtree(path, ignore_errors=True)
        store = PartitionStore(path)
        self._replay(partition, store)
        return store

    def _replay(self, partition: int, store: PartitionStore) -> None:
        """Apply the committed changelog in whole batches, each closed by its checkpoint.

        Compaction may have dropped older checkpoint records (only the newest per key
        stays): the records of such a batch are then applied with the next checkpoint
        that remains, which is as good, since later batches rewrite what they touched.
        """
        self._consumer.assign([TopicPartition(self._topic, partition, OFFSET_BEGINNING)])
        pending: list[tuple[bytes, bytes | None]] = []
        applied = 0
        done = False
        while not done:
            for message in self._consumer.consume(10_000, 1.0):
                error = message.error()
                if error is not None:
                    done = done or error.code() == KafkaError._PARTITION_EOF
                    continue
                key = message.key()
                if key == CHECKPOINT_KEY:
                    store.write_raw(pending, Checkpoint.from_bytes(message.value()))
                    applied += len(pending)
                    pending = []
                elif key is not None:
                    pending.append((key, message.value()))
        if pending:
            # Committed transactions always end with their checkpoint; records after the
            # last one would mean a writer outside this engine.
            log.warning(
                "%s[%d]: ignored %d changelog records after the last checkpoint",
                self._topic, partition, len(pending),
            )  # fmt: skip
        log.info("%s[%d]: restored %d records", self._topic, partition, applied)
        self._consumer.unassign()

    def close(self) -> None:
        self._consumer.close()
