"""Merge rules: how inserts, partial updates and deletes change the stored events.

Everything here is pure: no clock, no broker, no store of its own. A ``BatchMerge``
applies one batch's commands, in order, to ``EventTables`` (in the merge processor, over
the batch's ``PartitionTransaction``, which reads the batch's own writes back and encodes
each key once when the batch commits), given the specs of the models the batch names
(resolved by the processor beforehand; nothing here reaches the registry).

Every stored event remembers the offset of the last message applied to it, and a message
at or below that offset is a redelivery and changes nothing: that is what makes
at-least-once delivery safe, and it is needed because an insert is not idempotent on its
own (it consumes the updates that were waiting for it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from driftline.state.commands import Command, Delete, Insert, JSONValue, Update, event_key
from driftline.state.spec import ModelSpec


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event_id: str
    timestamp_ms: int
    columns: dict[str, JSONValue]
    # Kafka timestamp of the insert: arrival minus event time is the ingest delay.
    ingested_ms: int
    # Offset of the last ingest message applied to this event (see the module docstring).
    applied_offset: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.event_id, "ts": self.timestamp_ms, "in": self.ingested_ms,
                "o": self.applied_offset, "cols": self.columns}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StoredEvent:
        return cls(raw["id"], raw["ts"], raw["cols"], raw["in"], raw["o"])


@dataclass(frozen=True, slots=True)
class ParkedUpdate:
    """An update whose insert has not arrived yet, with its original message (what is
    stored while it waits, and what its dead letter carries if the insert never comes)."""

    update: Update
    raw_value: bytes


@dataclass(frozen=True, slots=True)
class EventChange:
    """One event's state before and after a command: what the metric bins retract and add."""

    model_key: str
    before: StoredEvent | None
    after: StoredEvent | None


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that cannot be applied; ``ref`` points at it in its batch."""

    ref: int
    reason: str


@dataclass(frozen=True, slots=True)
class ExpiredUpdate:
    key: str
    parked: ParkedUpdate


class EventTables(Protocol):
    """The events and their waiting updates, as the batch has left them so far."""

    def get_event(self, key: str) -> StoredEvent | None: ...

    def set_event(self, key: str, event: StoredEvent | None) -> None: ...

    def get_parked(self, key: str) -> tuple[ParkedUpdate, ...]: ...

    def set_parked(self, key: str, parked: tuple[ParkedUpdate, ...]) -> None: ...


@dataclass
class MergeOutcome:
    changes: list[EventChange] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # (model_key, column) -> how many values were dropped (updates of read-only columns,
    # columns the spec does not know).
    dropped_fields: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Every event key the batch wrote, with its event as the store held it before the
    # batch: with the events after it, what the hour index must change.
    previous: dict[str, StoredEvent | None] = field(default_factory=dict)
    # deletion_id -> events this batch deleted for that deletion request.
    deleted: Counter[str] = field(default_factory=Counter)


def inserted_event(spec: ModelSpec, insert: Insert) -> tuple[StoredEvent, list[str]]:
    """The event an insert stores, and the columns it dropped because the spec lacks them."""
    known = spec.columns
    columns = {name: value for name, value in insert.columns.items() if name in known}
    dropped = dropped_insert_fields(spec, insert.columns)
    timestamp = insert.received_ms if insert.timestamp_ms is None else insert.timestamp_ms
    event = StoredEvent(insert.event_id, timestamp, columns, insert.received_ms, insert.offset)
    return event, dropped


def updated_event(
    spec: ModelSpec, current: StoredEvent, update: Update
) -> tuple[StoredEvent, list[str]]:
    """Apply a partial update: targets and metadata only; omitted fields stay, null clears."""
    updatable = spec.updatable_columns
    columns = dict(current.columns)
    dropped: list[str] = []
    for name, value in update.columns.items():
        if name in updatable:
            columns[name] = value
        else:
            dropped.append(name)
    timestamp = current.timestamp_ms if update.timestamp_ms is None else update.timestamp_ms
    applied = max(current.applied_offset, update.offset)
    updated = StoredEvent(current.event_id, timestamp, columns, current.ingested_ms, applied)
    return updated, dropped


def dropped_insert_fields(spec: ModelSpec, columns: dict[str, JSONValue]) -> list[str]:
    """What an insert will drop (columns the spec does not list); the API reports it."""
    known = spec.columns
    return [name for name in columns if name not in known]


def dropped_update_fields(spec: ModelSpec, columns: dict[str, JSONValue]) -> list[str]:
    """What a partial update will drop; the client reports it before sending."""
    updatable = spec.updatable_columns
    return [name for name in columns if name not in updatable]


def expire_parked(
    key: str, parked: tuple[ParkedUpdate, ...], now_ms: int, timeout_ms: int
) -> tuple[tuple[ParkedUpdate, ...], list[ExpiredUpdate]]:
    """Split parked updates into those still waiting and those whose insert never came."""
    deadline = now_ms - timeout_ms
    kept = tuple(p for p in parked if p.update.received_ms > deadline)
    expired = [ExpiredUpdate(key, p) for p in parked if p.update.received_ms <= deadline]
    return kept, expired


def _already_applied(current: StoredEvent | None, command: Command) -> bool:
    return current is not None and command.offset <= current.applied_offset


class BatchMerge:
    """One batch's commands applied in order: each reads what the ones before it wrote."""

    def __init__(
        self,
        tables: EventTables,
        specs: Mapping[str, ModelSpec],
        parked_updates_per_event: int,
    ) -> None:
        self._tables = tables
        self._specs = specs
        self._parked_limit = parked_updates_per_event
        self.outcome = MergeOutcome()

    def apply(self, command: Command, raw_value: bytes) -> None:
        """Apply one command; ``raw_value`` is its message (kept if the update waits)."""
        spec = self._specs.get(command.model_key)
        if spec is None:
            self._reject(command, f"model {command.model_key!r} is not registered")
        elif isinstance(command, Insert):
            self._insert(spec, command)
        elif isinstance(command, Update):
            self._update(spec, command, raw_value)
        else:
            self._delete(command)

    def _insert(self, spec: ModelSpec, insert: Insert) -> None:
        key = event_key(insert.model_key, insert.event_id)
        before = self._tables.get_event(key)
        if _already_applied(before, insert):
            return
        after, dropped = inserted_event(spec, insert)
        self._count_dropped(spec, dropped)
        waited, later = self._parked_split(key, insert.offset)
        for parked in waited:
            after, dropped = updated_event(spec, after, parked.update)
            self._count_dropped(spec, dropped)
        if waited:
            self._tables.set_parked(key, later)
        self._write(spec.key, key, before, after)

    def _update(self, spec: ModelSpec, update: Update, raw_value: bytes) -> None:
        key = event_key(update.model_key, update.event_id)
        current = self._tables.get_event(key)
        if current is None:
            self._park(update, key, raw_value)
            return
        if _already_applied(current, update):
            return
        after, dropped = updated_event(spec, current, update)
        self._count_dropped(spec, dropped)
        self._write(spec.key, key, current, after)

    def _delete(self, delete: Delete) -> None:
        key = event_key(delete.model_key, delete.event_id)
        before = self._tables.get_event(key)
        if _already_applied(before, delete):
            return
        waited, later = self._parked_split(key, delete.offset)
        if waited:
            self._tables.set_parked(key, later)
        if before is not None:
            self._erase(delete.model_key, key, before, delete.update_metrics, delete.deletion_id)

    def erase_in_range(
        self,
        model: str,
        key: str,
        start_ms: int,
        end_ms: int,
        update_metrics: bool,
        deletion_id: str,
    ) -> bool:
        """Delete an event a time-range deletion found, if the batch has not deleted it or
        moved it out of ``[start_ms, end_ms)`` meanwhile; whether it did."""
        before = self._tables.get_event(key)
        if before is None or not start_ms <= before.timestamp_ms < end_ms:
            return False
        if self._tables.get_parked(key):
            self._tables.set_parked(key, ())
        self._erase(model, key, before, update_metrics, deletion_id)
        return True

    def _erase(
        self,
        model: str,
        key: str,
        before: StoredEvent,
        update_metrics: bool,
        deletion_id: str | None,
    ) -> None:
        """Remove the event; its metric contribution is retracted only if asked (SPEC §2)."""
        self._write(model, key, before, None, counts_in_metrics=update_metrics)
        if deletion_id is not None:
            self.outcome.deleted[deletion_id] += 1

    def _park(self, update: Update, key: str, raw_value: bytes) -> None:
        waiting = self._tables.get_parked(key)
        if any(p.update.offset == update.offset for p in waiting):
            return
        if len(waiting) >= self._parked_limit:
            self._reject(
                update,
                f"event {update.event_id!r} has no insert yet and already "
                f"{len(waiting)} updates wait for it (DRIFTLINE_PARKED_UPDATES_PER_EVENT)",
            )
            return
        parked = ParkedUpdate(update, raw_value)
        self._tables.set_parked(key, (*waiting, parked))

    def _write(
        self,
        model: str,
        key: str,
        before: StoredEvent | None,
        after: StoredEvent | None,
        counts_in_metrics: bool = True,
    ) -> None:
        """Store ``after``; the change goes to the metric bins unless told otherwise."""
        self._remember_previous(key, before)
        self._tables.set_event(key, after)
        if counts_in_metrics and before != after:
            self.outcome.changes.append(EventChange(model, before, after))

    def _remember_previous(self, key: str, before: StoredEvent | None) -> None:
        """The first write of a key in the batch sees what the store held."""
        if key not in self.outcome.previous:
            self.outcome.previous[key] = before

    def _parked_split(
        self, key: str, offset: int
    ) -> tuple[tuple[ParkedUpdate, ...], tuple[ParkedUpdate, ...]]:
        """Parked updates sent before ``offset``, and any parked after it.

        Normally all of them are earlier. A later one exists only while a partition is
        being redelivered: it was parked after this message deleted the event, and it
        must stay parked rather than be applied to (or erased with) an older version.
        """
        parked = self._tables.get_parked(key)
        earlier = tuple(p for p in parked if p.update.offset < offset)
        if len(earlier) == len(parked):
            return earlier, ()
        return earlier, tuple(p for p in parked if p.update.offset > offset)

    def _count_dropped(self, spec: ModelSpec, dropped: list[str]) -> None:
        for name in dropped:
            self.outcome.dropped_fields[(spec.key, name)] += 1

    def _reject(self, command: Command, reason: str) -> None:
        self.outcome.rejections.append(Rejection(command.ref, reason))
