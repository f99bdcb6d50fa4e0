"""Deletion requests inside the merge agent: by ids, and by time range in steps.

The merge handler hands every deletion command of a batch here, in order with the other
commands, together with the batch's ``BatchMerge`` (so a deletion sees the batch's own
writes) and the partition store (the hour index, the records). Progress per request is a
``state.deletions.DeletionRecord`` in the partition's ``deletions`` table, written in the
batch's atomic write like everything else. The rules of progress are pure and live in
``state.deletions``; this module only finds the events and asks the cap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import Protocol

import orjson

from driftline.agents.runtime import BatchResult, Outgoing
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
    RUNNING,
    DeletionRecord,
    after_step,
    capped,
    deferred,
    ids_applied,
    range_registered,
    resumable,
    resumed,
    waiting,
)
from driftline.state.events import BatchMerge
from driftline.state.hour_index import indexed_in_range
from driftline.state.store import PartitionStore, Write, table_write
from driftline.topics.messages import deletion_key, encode_continue_deletion

DELETIONS = "deletions"
# The ids of the deletions waiting for a tick (the daily cap, a deferred step): the tick
# reads this small table, not every deletion the partition ever ran.
WAITING = "deletions-waiting"
# model \0 UTC day -> events this partition deleted by time range that day (the cap's
# exact count; Redis holds a copy that the partition sets, see agents.deletion_budget).
DELETED_PER_DAY = "deleted-per-day"


class DeletionBudget(Protocol):
    """The per-model daily cap on deleted events, shared by every partition."""

    def grant(self, model: str, day: int, partition: int, already: int, wanted: int) -> int | None:
        """How many of ``wanted`` events the partition may delete now, having deleted
        ``already`` that day; None when the cap cannot be checked now."""

    def publish(self, partition: int, day: int, deleted: Mapping[str, int]) -> None:
        """The partition's own counts of ``day`` (model -> events deleted)."""


class DeletionRecords:
    """The batch's view of the deletion records and daily counts: the store's, overlaid
    by its own writes."""

    def __init__(self, store: PartitionStore) -> None:
        self._store = store
        self._written: dict[str, DeletionRecord] = {}
        self._counted: dict[tuple[str, int], int] = {}

    def get(self, deletion_id: str) -> DeletionRecord | None:
        if deletion_id in self._written:
            return self._written[deletion_id]
        raw = self._store.get(DELETIONS, deletion_id.encode())
        return None if raw is None else DeletionRecord.from_dict(orjson.loads(raw))

    def put(self, deletion_id: str, record: DeletionRecord) -> None:
        self._written[deletion_id] = record

    def deleted_on(self, model: str, day: int) -> int:
        if (model, day) in self._counted:
            return self._counted[(model, day)]
        raw = self._store.get(DELETED_PER_DAY, _day_key(model, day))
        return 0 if raw is None else int(raw)

    def count_deleted(self, model: str, day: int, deleted: int) -> None:
        self._counted[(model, day)] = self.deleted_on(model, day) + deleted

    def writes(self) -> list[Write]:
        writes: list[Write] = []
        for key, record in self._written.items():
            writes.extend(_record_writes(key, record))
        writes.extend(
            table_write(DELETED_PER_DAY, _day_key(model, day), str(count).encode())
            for (model, day), count in self._counted.items()
        )
        return writes


class DeletionRequests:
    def __init__(
        self,
        ingest_topic: str,
        batch_size: int,
        budget: DeletionBudget,
        clock_ms: Callable[[], int],
    ) -> None:
        self._ingest_topic = ingest_topic
        self._batch_size = batch_size
        self._budget = budget
        self._clock_ms = clock_ms

    def apply(
        self,
        partition: int,
        command: DeletionCommand,
        merge: BatchMerge,
        records: DeletionRecords,
        store: PartitionStore,
    ) -> list[Outgoing]:
        """Apply one deletion command; returns the request for its next step, if any."""
        if isinstance(command, DeleteIds):
            self._delete_ids(merge, records, command)
            return []
        return self._range_command(partition, merge, records, store, command)

    def resume(self, partition: int, store: PartitionStore, now_ms: int) -> BatchResult:
        """Range deletions that waited go on: past the daily cap once a new UTC day has
        begun, a deferred step at once. Also sets the partition's daily counts in Redis
        again (they come back by themselves after Redis is wiped) and forgets old ones."""
        result = BatchResult()
        today = now_ms // DAY_MS
        for raw_key, _ in store.items(WAITING):
            raw = store.get(DELETIONS, raw_key)
            record = None if raw is None else DeletionRecord.from_dict(orjson.loads(raw))
            if record is not None and resumable(record, today):
                deletion_id = raw_key.decode()
                result.writes.extend(_record_writes(deletion_id, resumed(record)))
                result.outgoing.append(self._continuation(partition, record.model, deletion_id))
        counts: dict[str, int] = {}
        for raw_key, raw in store.items(DELETED_PER_DAY):
            model, day = _split_day_key(raw_key)
            if day == today:
                counts[model] = int(raw)
            elif day < today - 1:
                result.writes.append(table_write(DELETED_PER_DAY, raw_key, None))
        self._budget.publish(partition, today, counts)
        return result

    def _delete_ids(self, merge: BatchMerge, records: DeletionRecords, command: DeleteIds) -> None:
        record = records.get(command.deletion_id)
        if record is not None and command.offset <= record.last_offset:
            return  # redelivered
        before = merge.outcome.deleted[command.deletion_id]
        requested = list(dict.fromkeys(command.event_ids))
        for event_id in requested:
            delete = Delete(command.model_key, event_id, 0, command.offset, command.ref,
                            command.update_metrics, command.deletion_id)  # fmt: skip
            merge.apply(delete, b"")
        deleted = merge.outcome.deleted[command.deletion_id] - before
        records.put(
            command.deletion_id,
            ids_applied(record, command.model_key, command.update_metrics, command.offset,
                        len(requested), deleted),
        )  # fmt: skip

    def _range_command(
        self,
        partition: int,
        merge: BatchMerge,
        records: DeletionRecords,
        store: PartitionStore,
        command: DeleteRange | ContinueDeletion,
    ) -> list[Outgoing]:
        """Register a range deletion or continue one: one step, and ask for the next."""
        record = records.get(command.deletion_id)
        if isinstance(command, DeleteRange):
            if record is not None:
                return []  # redelivered
            record = range_registered(command.model_key, command.start_ms, command.end_ms,
                                      command.update_metrics, command.offset)  # fmt: skip
        elif record is None or record.state != RUNNING or command.offset <= record.last_offset:
            return []  # unknown, finished, waiting for its cap, or redelivered
        else:
            record = replace(record, last_offset=command.offset)
        record = self._range_step(partition, merge, records, store, command.deletion_id, record)
        records.put(command.deletion_id, record)
        if record.state != RUNNING or record.deferred:
            return []  # done, or waiting for a tick
        return [self._continuation(partition, record.model, command.deletion_id)]

    def _range_step(
        self,
        partition: int,
        merge: BatchMerge,
        records: DeletionRecords,
        store: PartitionStore,
        deletion_id: str,
        record: DeletionRecord,
    ) -> DeletionRecord:
        """Delete up to one batch of the range's events, within the model's daily cap."""
        model = record.model
        day = self._clock_ms() // DAY_MS
        already = records.deleted_on(model, day)
        budget = self._budget.grant(model, day, partition, already, self._batch_size)
        if budget is None:
            return deferred(record)
        if budget <= 0:
            return capped(record, day)
        deleted = 0
        for key in _range_candidates(store, merge, record):
            if deleted >= budget:
                break
            event = merge.event(key)
            if event is None or not record.start_ms <= event.timestamp_ms < record.end_ms:
                continue
            merge.erase(model, key, record.update_metrics, deletion_id)
            deleted += 1
        records.count_deleted(model, day, deleted)
        if deleted < budget:
            self._budget.publish(partition, day, {model: already + deleted})
        return after_step(record, deleted, budget)

    def _continuation(self, partition: int, model: str, deletion_id: str) -> Outgoing:
        project_id, model_id = model.split("/", 1)
        return Outgoing(
            self._ingest_topic,
            deletion_key(project_id, model_id),
            encode_continue_deletion(model, deletion_id),
            partition=partition,
        )


def _record_writes(deletion_id: str, record: DeletionRecord) -> list[Write]:
    key = deletion_id.encode()
    return [
        table_write(DELETIONS, key, orjson.dumps(record.to_dict())),
        table_write(WAITING, key, b"" if waiting(record) else None),
    ]


def _day_key(model: str, day: int) -> bytes:
    return f"{model}\0{day}".encode()


def _split_day_key(raw: bytes) -> tuple[str, int]:
    model, _, day = raw.decode().rpartition("\0")
    return model, int(day)


def _range_candidates(
    store: PartitionStore, merge: BatchMerge, record: DeletionRecord
) -> Iterator[str]:
    """Events-table keys that may lie in the range: the hour index's, then the batch's own.

    Keys come in index order; the caller re-checks each event's time, since the batch may
    have moved or deleted it.
    """
    model = record.model
    for _, event_id in indexed_in_range(store, model, record.start_ms, record.end_ms):
        yield event_key(model, event_id)
    owned = f"{model}/"
    for key, event in list(merge.outcome.events.items()):
        if event is not None and key.startswith(owned):
            yield key
