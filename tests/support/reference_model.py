"""SPEC §2 read literally, one operation at a time, in plain Python.

The independent computation the merge agent is checked against: no batches, no
offsets, no shared code with ``state.events``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# SPEC §2: an insert keeps the columns its model names; an update changes only targets and
# metadata.
KEPT_ROLES = ("inputs", "outputs", "targets", "decisions", "metadata")
UPDATABLE_ROLES = ("targets", "metadata")


@dataclass
class ReferenceEvents:
    known: set[str]
    updatable: set[str]
    parked_limit: int
    events: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    waiting: dict[str, list[tuple[dict[str, Any], int | None]]] = field(default_factory=dict)

    @classmethod
    def for_spec(cls, spec: Mapping[str, Any], parked_limit: int) -> ReferenceEvents:
        """The model of the events of a registered spec (a dict, as the client sends it)."""
        return cls(
            known=_columns(spec, KEPT_ROLES),
            updatable=_columns(spec, UPDATABLE_ROLES),
            parked_limit=parked_limit,
        )

    def insert(self, event_id: str, columns: dict[str, Any], timestamp: int) -> None:
        kept = {k: v for k, v in columns.items() if k in self.known}
        self.events[event_id] = (timestamp, kept)
        for update_columns, update_ts in self.waiting.pop(event_id, []):
            self._apply_update(event_id, update_columns, update_ts)

    def update(self, event_id: str, columns: dict[str, Any], timestamp: int | None) -> None:
        if event_id in self.events:
            self._apply_update(event_id, columns, timestamp)
        elif len(self.waiting.setdefault(event_id, [])) < self.parked_limit:
            self.waiting[event_id].append((columns, timestamp))

    def delete(self, event_id: str) -> None:
        self.events.pop(event_id, None)
        self.waiting.pop(event_id, None)

    def _apply_update(self, event_id: str, columns: dict[str, Any], ts: int | None) -> None:
        old_ts, old_columns = self.events[event_id]
        merged = dict(old_columns)
        merged.update({k: v for k, v in columns.items() if k in self.updatable})
        self.events[event_id] = (old_ts if ts is None else ts, merged)


def _columns(spec: Mapping[str, Any], roles: tuple[str, ...]) -> set[str]:
    return {column for role in roles for column in spec.get(role, [])}
