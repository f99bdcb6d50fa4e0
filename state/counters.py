"""Per-model service counters: dead letters, fields dropped by the merge rules, and
messages that arrived on another partition than their key's (forwarded there).

Kept in the partition store and written in the same atomic batch as the events, so a
redelivered message never counts twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ModelCounters:
    dead_letters: int = 0
    dropped_fields: Mapping[str, int] = field(default_factory=dict)
    forwarded: int = 0

    def plus(self, other: ModelCounters) -> ModelCounters:
        dropped = Counter(self.dropped_fields)
        dropped.update(other.dropped_fields)
        return ModelCounters(
            self.dead_letters + other.dead_letters, dict(dropped), self.forwarded + other.forwarded
        )

    def to_dict(self) -> dict[str, Any]:
        return {"dead_letters": self.dead_letters, "dropped_fields": dict(self.dropped_fields),
                "forwarded": self.forwarded}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelCounters:
        return cls(
            int(raw["dead_letters"]), dict(raw["dropped_fields"]), int(raw.get("forwarded", 0))
        )


def counters_update(
    dead_letters_by_model: Mapping[str, int],
    dropped_fields: Mapping[tuple[str, str], int],
    forwarded_by_model: Mapping[str, int],
) -> dict[str, ModelCounters]:
    """One batch's increments, grouped by model."""
    dropped: dict[str, Counter[str]] = {}
    for (model, column), count in dropped_fields.items():
        dropped.setdefault(model, Counter())[column] += count
    models = set(dead_letters_by_model) | set(dropped) | set(forwarded_by_model)
    return {
        model: ModelCounters(
            dead_letters_by_model.get(model, 0),
            dict(dropped.get(model, {})),
            forwarded_by_model.get(model, 0),
        )
        for model in models
    }
