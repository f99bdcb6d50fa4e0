"""What the registry holds for a model: its spec and, when it has one, its baseline profile."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from driftline.state.baseline import BaselineProfile
from driftline.state.spec import ModelSpec


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    spec: ModelSpec
    baseline: BaselineProfile | None = None

    @property
    def key(self) -> str:
        return self.spec.key

    def canonical(self) -> bytes:
        """The model as the registry stores it, keys sorted: equal bytes, equal models."""
        return orjson.dumps(
            self.to_dict(), option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY
        )

    def to_dict(self) -> dict[str, Any]:
        raw = self.spec.to_dict()
        if self.baseline is not None:
            raw["baseline"] = self.baseline.to_dict()
        return raw

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RegisteredModel:
        fields = dict(raw)
        baseline = fields.pop("baseline", None)
        return cls(
            ModelSpec.from_dict(fields),
            None if baseline is None else BaselineProfile.from_dict(baseline),
        )
