"""What one partition knows of a deletion request: progress, and the work left.

A request reaches a partition as one or more commands (``state.commands``). The record
counts the commands applied and the events deleted, and for a time range says whether
work is left. The API sums the partitions' records into the request's status.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

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
    state: str = RUNNING
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
        return cls(**raw)

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
        state=DONE,
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
    state = RUNNING if deleted >= budget else DONE
    return replace(record, deleted=record.deleted + deleted, state=state)


def capped(record: DeletionRecord, day: int) -> DeletionRecord:
    return replace(record, state=WAITING_FOR_DAILY_CAP, capped_day=day)


def deferred(record: DeletionRecord) -> DeletionRecord:
    return replace(record, deferred=True)


def resumed(record: DeletionRecord) -> DeletionRecord:
    return replace(record, state=RUNNING, deferred=False)


def waiting(record: DeletionRecord) -> bool:
    """Whether the request waits for a tick to go on (the daily cap, or a deferred step)."""
    return record.state == WAITING_FOR_DAILY_CAP or record.deferred


def resumable(record: DeletionRecord, today: int) -> bool:
    if record.deferred:
        return record.state == RUNNING
    return record.state == WAITING_FOR_DAILY_CAP and record.capped_day < today
