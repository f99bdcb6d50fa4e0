"""What one partition knows of a deletion request: progress, and the work left.

A request reaches a partition as one or more commands (``state.commands``). The record
counts the commands applied and the events deleted, and for a time range says whether
work is left. The API sums the partitions' records into the request's status.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from driftline.state.events import BatchMerge


class DeletionState(StrEnum):
    """Where a request stands on one partition; the API sums them into its ``status``
    (the same words: SPEC, openapi.yaml)."""

    RUNNING = "running"
    DONE = "done"
    # The model reached its daily cap of deleted events: the rest waits for the next UTC day.
    WAITING_FOR_DAILY_CAP = "waiting_for_daily_cap"


DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class DeletionRecord:
    model: str
    kind: str  # "ids" | "range"
    update_metrics: bool
    commands: int = 0
    # Distinct ids asked for (by ids), and of those, events found and deleted.
    requested: int = 0
    deleted: int = 0
    state: DeletionState = DeletionState.RUNNING
    # Time range of a range deletion, UTC ms, start inclusive, end exclusive.
    start_ms: int = 0
    end_ms: int = 0
    # Offset of the last command applied: a redelivered command changes nothing.
    last_offset: int = -1
    # UTC day (ms since the epoch // DAY_MS) on which the daily cap stopped the work.
    capped_day: int = -1
    # A step could not check the daily cap (Redis did not answer): it is tried again on
    # the next tick. The request stays running meanwhile.
    deferred: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "kind": self.kind, "update_metrics": self.update_metrics,
            "commands": self.commands, "requested": self.requested, "deleted": self.deleted,
            "state": self.state,
            "start_ms": self.start_ms, "end_ms": self.end_ms, "last_offset": self.last_offset,
            "capped_day": self.capped_day, "deferred": self.deferred,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DeletionRecord:
        return cls(**{**raw, "state": DeletionState(raw["state"])})

    def public(self) -> dict[str, Any]:
        """What the status endpoint shows."""
        return {"model": self.model, "kind": self.kind, "commands": self.commands,
                "requested": self.requested, "deleted": self.deleted,
                "state": self.state}  # fmt: skip


def ids_applied(
    record: DeletionRecord | None,
    model: str,
    update_metrics: bool,
    offset: int,
    requested: int,
    deleted: int,
) -> DeletionRecord:
    """After one delete_ids message of the request: one more command done."""
    current = record or DeletionRecord(model, "ids", update_metrics)
    return replace(
        current,
        commands=current.commands + 1,
        requested=current.requested + requested,
        deleted=current.deleted + deleted,
        state=DeletionState.DONE,
        last_offset=offset,
    )


def range_registered(
    model: str, start_ms: int, end_ms: int, update_metrics: bool, offset: int
) -> DeletionRecord:
    return DeletionRecord(
        model, "range", update_metrics, commands=1, start_ms=start_ms, end_ms=end_ms,
        last_offset=offset,
    )  # fmt: skip


def after_step(record: DeletionRecord, deleted: int, budget: int) -> DeletionRecord:
    """A step that used its whole budget may have left work; one that did not is the last."""
    state = DeletionState.RUNNING if deleted >= budget else DeletionState.DONE
    return replace(record, deleted=record.deleted + deleted, state=state)


def capped(record: DeletionRecord, day: int) -> DeletionRecord:
    return replace(record, state=DeletionState.WAITING_FOR_DAILY_CAP, capped_day=day)


def deferred(record: DeletionRecord) -> DeletionRecord:
    return replace(record, deferred=True)


def resumed(record: DeletionRecord) -> DeletionRecord:
    return replace(record, state=DeletionState.RUNNING, deferred=False)


def waiting(record: DeletionRecord) -> bool:
    """Whether the request waits for a tick to go on (the daily cap, or a deferred step)."""
    return record.state == DeletionState.WAITING_FOR_DAILY_CAP or record.deferred


def resumable(record: DeletionRecord, today: int) -> bool:
    if record.deferred:
        return record.state == DeletionState.RUNNING
    return record.state == DeletionState.WAITING_FOR_DAILY_CAP and record.capped_day < today


@dataclass(frozen=True, slots=True)
class RangeStep:
    """One step of a time-range deletion: the record after it, and the events it deleted
    (None: it could not run, the cap being unknown or reached)."""

    record: DeletionRecord
    deleted: int | None = None

    @property
    def left_grant_unused(self) -> bool:
        """Whether the step deleted fewer events than the cap granted, which ends the
        range: the grant counted them all in the shared daily count, so the partition sets
        its share back to what it really deleted."""
        return self.record.state == DeletionState.DONE


def range_step(
    merge: BatchMerge,
    deletion_id: str,
    record: DeletionRecord,
    day: int,
    budget: int | None,
    candidates: Iterable[str],
) -> RangeStep:
    """Delete up to ``budget`` of the range's events (the daily cap's grant; None: the cap
    could not be checked) among ``candidates``, events-table keys that may lie in it."""
    if budget is None:
        return RangeStep(deferred(record))
    if budget <= 0:
        return RangeStep(capped(record, day))
    deleted = 0
    for key in candidates:
        if deleted >= budget:
            break
        if merge.erase_in_range(record.model, key, record.start_ms, record.end_ms,
                                record.update_metrics, deletion_id):  # fmt: skip
            deleted += 1
    return RangeStep(after_step(record, deleted, budget), deleted)
