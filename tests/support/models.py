"""The models the pipeline tests register, and the times their events fall in.

``FRAUD_SPEC`` (events merged and stored; no baseline) and ``CHURN_SPEC`` with
``CHURN_BASELINE`` (hourly bins, drift and performance). The columns each lets an event
keep and update follow from the spec (``ReferenceEvents.for_spec``).
"""

from __future__ import annotations

from typing import Any

from driftline.client import Driftline
from driftline.state.bins import HOUR_MS
from driftline.state.spec import ColumnType, ModelSpec, Task

FRAUD_SPEC = {
    "project_id": "shop",
    "model_id": "fraud",
    "inputs": ["age", "amount", "country"],
    "outputs": ["score"],
    "targets": ["is_fraud"],
    "decisions": ["blocked"],
    "metadata": ["uri"],
}
T0 = 1_750_000_000_000  # 2025-06-15 15:06:40 UTC

CHURN_SPEC = {
    "project_id": "shop",
    "model_id": "churn",
    "inputs": ["age", "plan"],
    "outputs": ["score"],
    "targets": ["churned"],
    "metadata": ["note"],
    "task": "binary_classification",
    "column_types": {"age": "int", "plan": "category", "score": "float"},
}
# The same model for pure tests: its columns, types and task (its metadata column is
# neither monitored nor counted).
CHURN_MODEL = ModelSpec.from_dict(CHURN_SPEC)
# A regression model for pure tests: a price predicted from an age, the price paid as target.
PRICE_MODEL = ModelSpec(
    project_id="shop",
    model_id="price",
    inputs=("age",),
    outputs=("price",),
    targets=("paid",),
    task=Task.REGRESSION,
    column_types={"age": ColumnType.INT, "price": ColumnType.FLOAT},
)
HOUR0 = 490_000 * HOUR_MS  # an hour in 2025
CHURN_BASELINE = [
    {"age": 18 + i % 60, "plan": ["free", "pro", "team"][i % 3], "score": (i % 100) / 100}
    for i in range(500)
]


def publish_churn(client: Driftline, rows: list[dict[str, Any]], update: bool = False) -> None:
    """Rows of the churn model through the client (``update``: partial updates)."""
    client.publish_events_batch("shop", "churn", rows, update_event=update)


def baseline_like(prefix: str, hour_ms: int, count: int) -> list[dict[str, Any]]:
    """Churn events (``POST /v1/events`` rows) whose ages and plans spread as the
    baseline's do."""
    return [
        {"event_id": f"{prefix}-{i:04d}", "event_timestamp": hour_ms + i * 1000,
         "event": {"age": 18 + i % 60, "plan": ["free", "pro", "team"][i % 3],
                   "score": (i % 100) / 100}}
        for i in range(count)
    ]  # fmt: skip


def drifting(prefix: str, hour_ms: int, count: int) -> list[dict[str, Any]]:
    """Churn events far older than any in the baseline."""
    return [
        {"event_id": f"{prefix}-{i:04d}", "event_timestamp": hour_ms + i * 1000,
         "event": {"age": 95, "plan": "free", "score": 0.5}}
        for i in range(count)
    ]  # fmt: skip
