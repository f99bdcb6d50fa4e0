"""The metrics topic's records: every changed bin, whole.

Key: the bin, ``project/model/<hour>`` (``state.bins.BIN_KEY``). Value: plain JSON
(``topics/SCHEMAS.md``), the document the Redis projection stores as it came and the API
serves; a tombstone when the bin became empty. The bins stage builds it with
``metrics_value`` and encodes it, and Redis readers decode it, through ``METRICS_VALUE``.
"""

from __future__ import annotations

import re
from typing import Any

from driftline.state import exact_json
from driftline.state.bins import HOUR_MS, BinKey, Counters
from driftline.state.names import split_model_key
from driftline.state.tables import Codec

# The JSON document of a bin, as the metrics topic, Redis and the API carry it.
MetricsValue = dict[str, Any]


def metrics_value(
    bin_key: BinKey,
    version: int,
    emitted_at_ms: int,
    counters: Counters,
    metrics: dict[str, Any] | None,
) -> MetricsValue:
    """The whole bin; ``metrics`` None (its model is not known) leaves the field out."""
    model, hour = bin_key
    project_id, model_id = split_model_key(model)
    value: MetricsValue = {
        "project_id": project_id,
        "model_id": model_id,
        "hour_start_ms": hour * HOUR_MS,
        "hour_end_ms": (hour + 1) * HOUR_MS,
        "version": version,
        "emitted_at_ms": emitted_at_ms,
        "counts": counters,
    }
    if metrics is not None:
        value["metrics"] = metrics
    return value


METRICS_VALUE: Codec[MetricsValue] = Codec(exact_json.dumps, exact_json.loads)


# The top-level field, written before ``counts`` and ``metrics``: the first match is it.
_EMITTED_AT = re.compile(rb'"emitted_at_ms":\s*(\d+)')


def emitted_at_ms(raw: bytes) -> int | None:
    """When an encoded document was emitted, read without decoding the whole of it (the
    projections time every bin they write); None when it holds no such field."""
    found = _EMITTED_AT.search(raw)
    return None if found is None else int(found.group(1))
