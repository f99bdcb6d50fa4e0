"""What the demo plots, from the bins and alerts the REST API serves: one value per hour
and the alerts to mark, written next to the PNGs as JSON so that a reader (and the smoke
test) can compare them with the API's bins."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from driftline.demo.story import Event


@dataclass(frozen=True)
class HourlySeries:
    """Per hour of ``hour_ms`` (bin starts): its events, labelled events, PSI of the drift
    column and accuracy; None where the API serves no bin (or the bin no such metric)."""

    events: list[int | None]
    labelled: list[int | None]
    psi: list[float | None]
    accuracy: list[float | None]


def hourly_series(
    bins: Sequence[Mapping[str, Any]], hour_ms: Sequence[int], drift_column: str
) -> HourlySeries:
    by_hour = {found["hour_start_ms"]: found["metrics"] for found in bins}
    served = [by_hour.get(start) for start in hour_ms]
    return HourlySeries(
        events=[_at(m, "traffic", "events") for m in served],
        labelled=[_at(m, "traffic", "labelled") for m in served],
        psi=[_at(m, "drift", drift_column, "psi") for m in served],
        accuracy=[_at(m, "performance", "accuracy") for m in served],
    )


def _at(metrics: Mapping[str, Any] | None, *path: str) -> Any:
    """The value at ``path`` in a bin's metrics; None if the bin or any step is absent."""
    found: Any = metrics
    for step in path:
        if found is None:
            return None
        found = found.get(step)
    return found


# Per hour bin start (ms): its events and labelled events.
Counts = dict[int, tuple[int, int]]


def served_counts(bins: Sequence[Mapping[str, Any]]) -> Counts:
    """The events and labelled events of each bin the API serves."""
    return {
        found["hour_start_ms"]: (_at(found["metrics"], "traffic", "events"),
                                 _at(found["metrics"], "traffic", "labelled"))
        for found in bins
    }  # fmt: skip


def counted(
    counts: Counts, hour_ms: Sequence[int], events: Iterable[Event], labelled: Iterable[Event]
) -> Counts:
    """``counts`` with ``events`` published and the labels of ``labelled`` come back."""
    added = dict(counts)
    for event in events:
        start = hour_ms[event.hour]
        n, k = added.get(start, (0, 0))
        added[start] = (n + 1, k)
    for event in labelled:
        start = hour_ms[event.hour]
        n, k = added[start]
        added[start] = (n, k + 1)
    return added


def without_range(counts: Counts, range_ms: tuple[int, int]) -> Counts:
    """``counts`` after the hours in [start, end) were deleted: their bins are gone."""
    start, end = range_ms
    return {hour: n for hour, n in counts.items() if not start <= hour < end}


@dataclass(frozen=True)
class AlertMark:
    """An alert as the plots mark it: its bin, the value it fired with, and the simulated
    hours (steps from the first) it fired and resolved in; ``resolved_by`` is
    ``"deletion"`` or ``"re-emission"`` (the bin judged again: late labels came in)."""

    rule_id: str
    column: str | None
    bin_start_ms: int
    fired_value: float
    fired_step: int
    resolved_step: int | None
    resolved_by: str | None


def alert_marks(
    alerts: Sequence[Mapping[str, Any]], step_starts_ms: Sequence[int], deletion_ms: int
) -> list[AlertMark]:
    """The alerts (as the API lists them) by bin, each change placed in the simulated hour
    under way when it happened (``step_starts_ms``: when each began); a resolution at or
    after ``deletion_ms`` is the deletion's."""
    marks = []
    for alert in sorted(alerts, key=lambda a: (a["bin_start_ms"], a["rule_id"])):
        changes = alert["changes"]
        fired = changes[0]
        resolved = changes[-1] if changes[-1]["change"] == "resolved" else None
        marks.append(AlertMark(
            rule_id=alert["rule_id"], column=alert["column"],
            bin_start_ms=alert["bin_start_ms"], fired_value=fired["value"],
            fired_step=step_at(fired["at_ms"], step_starts_ms),
            resolved_step=None if resolved is None else step_at(resolved["at_ms"], step_starts_ms),
            resolved_by=None if resolved is None
            else "deletion" if resolved["at_ms"] >= deletion_ms else "re-emission",
        ))  # fmt: skip
    return marks


def step_at(at_ms: int, step_starts_ms: Sequence[int]) -> int:
    """The simulated hour under way at ``at_ms`` (the last, past the stream's end)."""
    return max(0, bisect_right(step_starts_ms, at_ms) - 1)


@dataclass(frozen=True)
class Plotted:
    """Everything the plots show. ``streamed``: the bins once every label was in, before
    the deletion; ``final``: after it. ``deleted_ms``: the range deleted, [start, end)."""

    hour_ms: list[int]
    drift_column: str
    psi_critical: float
    accuracy_critical: float
    deleted_ms: tuple[int, int]
    streamed: HourlySeries
    final: HourlySeries
    alerts: list[AlertMark]
    # Change ids of the notifications the demo's webhook took, in order.
    webhook: list[str]

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)
