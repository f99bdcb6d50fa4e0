"""The evaluator's input ``<prefix>.model-bins``: every changed bin, keyed by its model.

The metrics topic is keyed by bin, so one model's hours spread over its partitions; an
alert rule compares a bin with earlier ones (1, 24, 168 hours back) and sums a day's or a
week's hours, so the evaluator needs all of a model's bins in one partition. The bins
stage writes each emission to both topics in the same transaction.

Key: ``project/model`` (text). Value: ``{"hour": <hour number>, "bin": <the metrics
topic's document, or null when the bin became empty>}`` (SCHEMAS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from driftline.state import exact_json
from driftline.state.tables import Codec
from driftline.topics.metric_bins import MetricsValue


@dataclass(frozen=True, slots=True)
class ModelBin:
    """One emission of an hour bin; ``value`` None: the bin is gone (every event deleted
    or moved away)."""

    hour: int
    value: MetricsValue | None


def _encoded(record: ModelBin) -> bytes:
    return exact_json.dumps({"hour": record.hour, "bin": record.value})


def _decoded(raw: bytes) -> ModelBin:
    document: Any = exact_json.loads(raw)
    if not isinstance(document, dict) or not isinstance(document.get("hour"), int):
        raise ValueError("not a model bin record: needs an integer 'hour'")
    value = document.get("bin")
    if value is not None and not isinstance(value, dict):
        raise ValueError("not a model bin record: 'bin' must be an object or null")
    return ModelBin(document["hour"], value)


MODEL_BIN: Codec[ModelBin] = Codec(_encoded, _decoded)
