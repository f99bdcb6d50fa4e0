"""Day and week bins of ``GET /v1/metrics?bin=day|week``, summed from the hour bins in Redis.

Only hour bins are kept (the pipeline, the metrics topic and Redis know no other size), so
a day or a week is computed when it is read: its hours' counters summed
(``state.periods``) and the metric formulas applied to the sum (``state.metrics``), as if
the period had been one bin. A period's metrics are then exact, never averages of its
hours' metrics, and always as fresh as its hours.

A range selects periods as it selects hours: those whose *start* lies in ``[start, end)``,
each served whole (a week starting inside the range includes its hours after ``end``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from driftline.state.bins import HOUR_MS
from driftline.state.metrics import bin_metrics
from driftline.state.names import split_model_key
from driftline.state.periods import Period, period_counters, period_end_ms, period_start_hour
from driftline.state.registered import RegisteredModel


def hours_of_periods(start_ms: int, end_ms: int, period: Period) -> tuple[int, int] | None:
    """``[first, end)`` in UTC ms: the hours of the periods whose start lies in
    ``[start_ms, end_ms)``; None when no period starts there."""
    first = period_start_hour(-(-start_ms // HOUR_MS), period)
    if first * HOUR_MS < start_ms:
        first += period.hours
    last = period_start_hour((end_ms - 1) // HOUR_MS, period)
    if first > last:
        return None
    return first * HOUR_MS, period_end_ms(last, period)


def period_bins(
    registered: RegisteredModel, hour_bins: Iterable[Mapping[str, Any]], period: Period
) -> list[dict[str, Any]]:
    """The model's ``period`` bins, oldest first, from its hour bins (as Redis holds them)."""
    hour_counters = {int(b["hour_start_ms"]) // HOUR_MS: b["counts"] for b in hour_bins}
    hours_in = Counter(period_start_hour(hour, period) for hour in hour_counters)
    project_id, model_id = split_model_key(registered.key)
    return [
        {
            "project_id": project_id,
            "model_id": model_id,
            "bin": period.value,
            "bin_start_ms": start * HOUR_MS,
            "bin_end_ms": period_end_ms(start, period),
            "hour_bins": hours_in[start],
            "counts": counters,
            "metrics": bin_metrics(registered.spec, registered.baseline, counters),
        }
        for start, counters in sorted(period_counters(hour_counters, period).items())
    ]
