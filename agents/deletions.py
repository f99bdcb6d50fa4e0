"""Deletion requests inside the merge processor: by ids, and by time range in steps.

The merge processor hands every deletion command of a batch here, in order with the other
commands, together with the batch's ``BatchMerge`` and transaction, so a deletion sees the
batch's own writes. Progress per request is a ``state.deletions.DeletionRecord`` in the
partition's ``DELETIONS`` table, written in the batch's transaction like everything else.
The rules of progress and of a range step are pure and live in ``state.deletions``; this
module finds the candidate events, asks the daily cap, and sends the next step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Protocol

from driftline.agents.runtime import Outgoing
from driftline.state.commands import (
    ContinueDeletion,
    Delete,
    DeleteIds,
    DeleteRange,
    DeletionCommand,
    event_key,
)
from driftline.state.deletions import (
    DAY_MS,
    DeletionRecord,
    DeletionState,
    ids_applied,
    range_registered,
    range_step,
    resumable,
    resumed,
    waiting,
)
from driftline.state.events import BatchMerge
from driftline.state.hour_index import indexed_in_range
from driftline.state.names import split_model_key
from driftline.state.partition_tables import DELETED_PER_DAY, DELETIONS, DELETIONS_WAITING
from driftline.state.tables import PartitionTransaction
from driftline.topics.messages import deletion_key, encode_continue_deletion


class DeletionBudget(Protocol):
    """The per-model daily cap on deleted events, shared by every partition."""

    def grant(self, model: str, day: int, partition: int, already: int, wanted: int) -> int | None:
        """How many of ``wanted`` events the partition may delete now, having deleted
        ``already`` that day; None when the cap cannot be checked now."""

    def publish(self, partition: int, day: int, deleted: Mapping[str, int]) -> None:
        """The partition's own counts of ``day`` (model -> events deleted)."""


class DeletionRequests:
    def __init__(self, ingest_topic: str, batch_size: int, budget: DeletionBudget) -> None:
        self._ingest_topic = ingest_topic
        self._batch_size = batch_size
        self._budget = budget

    def apply(
        self,
        partition: int,
        command: DeletionCommand,
        merge: BatchMerge,
        tx: PartitionTransaction,
        now_ms: int,
    ) -> list[Outgoing]:
        """Apply one deletion command; returns the request for its next step, if any."""
        if isinstance(command, DeleteIds):
            _delete_ids(merge, tx, command)
            return []
        return self._range_command(partition, merge, tx, command, now_ms)

    def resume(self, partition: int, tx: PartitionTransaction, now_ms: int) -> list[Outgoing]:
        """Range deletions that waited go on: past the daily cap once a new UTC day has
        begun, a deferred step at once. Also sets the partition's daily counts in Redis
        again (they come back by themselves after Redis is wiped) and forgets old ones."""
        outgoing = []
        today = now_ms // DAY_MS
        for deletion_id, _ in list(tx.items(DELETIONS_WAITING)):
            record = tx.get(DELETIONS, deletion_id)
            if record is not None and resumable(record, today):
                _put(tx, deletion_id, resumed(record))
                outgoing.append(self._continuation(partition, record.model, deletion_id))
        counts: dict[str, int] = {}
        for (model, day), count in list(tx.items(DELETED_PER_DAY)):
            if day == today:
                counts[model] = count
            elif day < today - 1:
                tx.delete(DELETED_PER_DAY, (model, day))
        self._budget.publish(partition, today, counts)
        return outgoing

    def _range_command(
        self,
        partition: int,
        merge: BatchMerge,
        tx: PartitionTransaction,
        command: DeleteRange | ContinueDeletion,
        now_ms: int,
    ) -> list[Outgoing]:
        """Register a range deletion or continue one: one step, and ask for the next."""
        record = tx.get(DELETIONS, command.deletion_id)
        if isinstance(command, DeleteRange):
            if record is not None:
                return []  # redelivered
            record = range_registered(command.model_key, command.start_ms, command.end_ms,
                                      command.update_metrics, command.offset)  # fmt: skip
        elif (
            record is None
            or record.state != DeletionState.RUNNING
            or command.offset <= record.last_offset
        ):
            return []  # unknown, finished, waiting for its cap, or redelivered
        else:
            record = replace(record, last_offset=command.offset)
        record = self._range_step(partition, merge, tx, command.deletion_id, record, now_ms)
        _put(tx, command.deletion_id, record)
        if record.state != DeletionState.RUNNING or record.deferred:
            return []  # done, or waiting for a tick
        return [self._continuation(partition, record.model, command.deletion_id)]

    def _range_step(
        self,
        partition: int,
        merge: BatchMerge,
        tx: PartitionTransaction,
        deletion_id: str,
        record: DeletionRecord,
        now_ms: int,
    ) -> DeletionRecord:
        """One step within the model's daily cap; the partition's count of the day is kept
        exact in its own table (Redis holds a copy, see ``agents.deletion_budget``)."""
        model, day = record.model, now_ms // DAY_MS
        already = tx.get(DELETED_PER_DAY, (model, day)) or 0
        budget = self._budget.grant(model, day, partition, already, self._batch_size)
        step = range_step(merge, deletion_id, record, day, budget,
                          _range_candidates(tx, merge, record))  # fmt: skip
        if step.deleted is not None:
            tx.set(DELETED_PER_DAY, (model, day), already + step.deleted)
            if step.left_grant_unused:
                self._budget.publish(partition, day, {model: already + step.deleted})
        return step.record

    def _continuation(self, partition: int, model: str, deletion_id: str) -> Outgoing:
        project_id, model_id = split_model_key(model)
        return Outgoing(
            self._ingest_topic,
            deletion_key(project_id, model_id),
            encode_continue_deletion(model, deletion_id),
            partition=partition,
        )


def _delete_ids(merge: BatchMerge, tx: PartitionTransaction, command: DeleteIds) -> None:
    record = tx.get(DELETIONS, command.deletion_id)
    if record is not None and command.offset <= record.last_offset:
        return  # redelivered
    before = merge.outcome.deleted[command.deletion_id]
    requested = list(dict.fromkeys(command.event_ids))
    for event_id in requested:
        delete = Delete(command.model_key, event_id, 0, command.offset, command.ref,
                        command.update_metrics, command.deletion_id)  # fmt: skip
        merge.apply(delete, b"")
    deleted = merge.outcome.deleted[command.deletion_id] - before
    _put(
        tx,
        command.deletion_id,
        ids_applied(record, command.model_key, command.update_metrics, command.offset,
                    len(requested), deleted),
    )  # fmt: skip


def _put(tx: PartitionTransaction, deletion_id: str, record: DeletionRecord) -> None:
    """The record, and its mark in the table the tick reads if it waits for one."""
    tx.set(DELETIONS, deletion_id, record)
    if waiting(record):
        tx.set(DELETIONS_WAITING, deletion_id, b"")
    else:
        tx.delete(DELETIONS_WAITING, deletion_id)


def _range_candidates(
    tx: PartitionTransaction, merge: BatchMerge, record: DeletionRecord
) -> Iterator[str]:
    """Events-table keys that may lie in the range: the hour index's, then the batch's own
    (the index takes them when the batch ends).

    Keys come in index order; ``range_step`` re-checks each event's time, since the batch
    may have moved or deleted it.
    """
    model = record.model
    for _, _, event_id in indexed_in_range(tx, model, record.start_ms, record.end_ms):
        yield event_key(model, event_id)
    owned = f"{model}/"
    yield from (key for key in list(merge.outcome.previous) if key.startswith(owned))
