"""Alert evaluation, pure (SPEC §3 "Alerts"): the state of one (rule, column, bin), and
the change of state to publish.

An alert is per (rule, column, bin). Each time a bin is emitted (or re-emitted: late
labels, deletions, moved events) its state is evaluated again from the bins as they are
now; ``transition`` turns the previous and the new state into the one change to publish,
or none, so a re-evaluation with the same result publishes nothing and each change goes
out once.

Not evaluable (``evaluate`` answers None, and the state stays as it was):

- yet: the bin's end plus the rule's evaluation delay is after ``now_ms`` (a metric that
  waits on late labels is judged once they had time to arrive);
- the metric is absent from the bin: performance without labelled events, a ratio whose
  denominator is zero, drift of a column without values (no data is never an alert);
- a relative comparison without its reference: the past bin is missing (no events then,
  or not given) or lacks the metric, the baseline lacks the column, or the reference is 0
  (a change relative to nothing has no size).

The clock is passed in (``now_ms``), never read here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from driftline.state.alert_rules import AlertRule, ComparisonKind, Direction, Level
from driftline.state.baseline import BaselineProfile
from driftline.state.bins import HOUR_MS
from driftline.state.periods import period_end_ms

# An emitted bin's ``metrics`` document (``state.metrics.bin_metrics``), by bin start hour.
EmittedBins = Mapping[int, Mapping[str, Any]]


class Severity(StrEnum):
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"


class Change(StrEnum):
    """A change of an alert's state, as the alerts topic and the channels carry it."""

    FIRED = "fired"
    ESCALATED = "escalated"
    DE_ESCALATED = "de-escalated"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertState:
    """One (rule, column, bin) as evaluated.

    ``value`` is what was compared: the metric itself for an absolute rule, the relative
    change ``(metric - reference) / |reference|`` for a relative one, with ``reference``
    the past bin's or the baseline's value (None for an absolute rule). ``threshold`` is
    the one breached (critical or warning), or, when ok, the first one that would be.
    """

    severity: Severity
    value: float
    threshold: float
    reference: float | None


def evaluate(
    rule: AlertRule,
    column: str | None,
    bin_start_hour: int,
    bins: EmittedBins,
    baseline: BaselineProfile | None,
    now_ms: int,
) -> AlertState | None:
    """The state of ``rule`` on ``column`` (None for a model-level metric) in the bin that
    starts at ``bin_start_hour``, ``bins`` holding the model's bins of the rule's size;
    None when not evaluable (module docstring)."""
    if not evaluable_at(rule, bin_start_hour, now_ms):
        return None
    current = bins.get(bin_start_hour)
    value = None if current is None else metric_value(rule, column, current)
    if value is None:
        return None
    if rule.comparison.kind is ComparisonKind.ABSOLUTE:
        return judged(rule, value, None)
    reference = _reference(rule, column, bin_start_hour, bins, baseline)
    if reference is None or reference == 0:
        return None
    return judged(rule, (value - reference) / abs(reference), reference)


def evaluable_at(rule: AlertRule, bin_start_hour: int, now_ms: int) -> bool:
    """Whether the bin has ended, and the rule's evaluation delay passed, at ``now_ms``."""
    return due_ms(rule, bin_start_hour) <= now_ms


def due_ms(rule: AlertRule, bin_start_hour: int) -> int:
    """When the bin starting at ``bin_start_hour`` can be judged under ``rule``: its end
    plus the rule's evaluation delay."""
    delay_ms = round(rule.evaluation_delay_hours * HOUR_MS)
    return period_end_ms(bin_start_hour, rule.bin) + delay_ms


def metric_value(rule: AlertRule, column: str | None, metrics: Mapping[str, Any]) -> float | None:
    """The rule's metric in one bin's ``metrics`` (where the catalogue says it is), or None
    when the bin leaves it out."""
    definition = rule.definition
    section = metrics.get(definition.section) or {}
    holder = (section.get(column) or {}) if definition.level is Level.COLUMN else section
    value = holder.get(definition.key)
    if value is None or not definition.over_events:
        return None if value is None else float(value)
    events = metrics.get("traffic", {}).get("events", 0)
    return value / events if events else None


def _reference(
    rule: AlertRule,
    column: str | None,
    bin_start_hour: int,
    bins: EmittedBins,
    baseline: BaselineProfile | None,
) -> float | None:
    if rule.comparison.kind is ComparisonKind.RELATIVE_TO_PAST:
        assert rule.comparison.bins_back is not None  # validated with the rule
        past = bins.get(bin_start_hour - rule.comparison.bins_back * rule.bin.hours)
        return None if past is None else metric_value(rule, column, past)
    return baseline_value(rule, column, baseline)


def baseline_value(
    rule: AlertRule, column: str | None, baseline: BaselineProfile | None
) -> float | None:
    """The metric's value in the baseline for ``column``, if the baseline has it."""
    read = rule.definition.baseline
    profile = None if baseline is None or column is None else baseline.columns.get(column)
    return None if read is None or profile is None else read(profile)


def judged(rule: AlertRule, value: float, reference: float | None) -> AlertState:
    """The severity of a compared value: critical past the critical threshold, warning past
    the warning one, ok otherwise ("past": above for greater, below for lesser)."""
    if _breaches(rule.direction, value, rule.critical):
        return AlertState(Severity.CRITICAL, value, rule.critical, reference)
    if rule.warning is not None and _breaches(rule.direction, value, rule.warning):
        return AlertState(Severity.WARNING, value, rule.warning, reference)
    first = rule.critical if rule.warning is None else rule.warning
    return AlertState(Severity.OK, value, first, reference)


def _breaches(direction: Direction, value: float, threshold: float) -> bool:
    return value > threshold if direction is Direction.GREATER else value < threshold


_RANK = {Severity.OK: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


def transition(previous: Severity | None, current: Severity | None) -> Change | None:
    """The change from ``previous`` (None: never evaluated, as ok) to ``current`` (None: not
    evaluable, the state stays), or None when there is nothing to publish."""
    if current is None:
        return None
    before, after = _RANK[previous or Severity.OK], _RANK[current]
    if before == after:
        return None
    if after == 0:
        return Change.RESOLVED
    if before == 0:
        return Change.FIRED
    return Change.ESCALATED if after > before else Change.DE_ESCALATED
