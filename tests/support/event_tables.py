"""The merge rules' tables as two dicts, and one batch merged into them: the merge rules'
unit tests and the bins' (which follow the changes a merge reports) share them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from driftline.state.commands import Command
from driftline.state.events import BatchMerge, EventTables, MergeOutcome, ParkedUpdate, StoredEvent
from driftline.state.spec import ModelSpec


@dataclass
class DictStore(EventTables):
    """The events and their waiting updates in dicts (the processor's are its transaction's)."""

    events: dict[str, StoredEvent] = field(default_factory=dict)
    parked: dict[str, tuple[ParkedUpdate, ...]] = field(default_factory=dict)

    def get_event(self, key: str) -> StoredEvent | None:
        return self.events.get(key)

    def set_event(self, key: str, event: StoredEvent | None) -> None:
        if event is None:
            self.events.pop(key, None)
        else:
            self.events[key] = event

    def get_parked(self, key: str) -> tuple[ParkedUpdate, ...]:
        return self.parked.get(key, ())

    def set_parked(self, key: str, parked: tuple[ParkedUpdate, ...]) -> None:
        if parked:
            self.parked[key] = parked
        else:
            self.parked.pop(key, None)


def merged(
    commands: Sequence[Command],
    raw_values: Sequence[bytes],
    store: DictStore,
    specs: Mapping[str, ModelSpec],
    parked_updates_per_event: int,
) -> MergeOutcome:
    """One batch merged into ``store``; ``raw_values[c.ref]`` is the message of ``c``."""
    merge = BatchMerge(store, specs, parked_updates_per_event)
    for command in commands:
        merge.apply(command, raw_values[command.ref])
    return merge.outcome
