"""What a changed bin means for a model's alerts: which bins to evaluate again, with which
bins beside them, and the alerts that change (pure; the evaluator agent feeds it).

An hour bin that changes (emitted, re-emitted after late labels, deletions or moved
events, or gone) changes the period holding it for every bin size, and the periods whose
rules look back at that period (``relative_to_past``): both are evaluated again. A
period's metrics are ``bin_metrics`` of its counters: an hour's own, a day's or week's the sum of
its hours' (``state.periods``), so hour, day and week rules read their metrics the same
way. A period that cannot be judged yet (it has not ended, or its
rule's evaluation delay has not passed) is due at a time; the evaluator keeps it and
evaluates it then.

Once a period can be judged, an open alert resolves when the period's metric is gone (the
bin was deleted whole, or no labelled event is left for a performance metric): nothing
is left to breach. A missing reference (a past bin, the baseline) leaves the alert as it
was: the current bin still breaches or not, only the yardstick is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from driftline.state.alert_evaluation import (
    AlertState,
    Severity,
    due_ms,
    evaluable_at,
    evaluate,
    metric_value,
    transition,
)
from driftline.state.alert_rules import AlertRule, ComparisonKind
from driftline.state.alerts import Alert, alert_key, changed
from driftline.state.bins import Counters
from driftline.state.metrics import bin_metrics
from driftline.state.periods import Period, period_start_hour
from driftline.state.registered import RegisteredModel

# A period's bin: (bin size, start hour).
PeriodKey = tuple[Period, int]


def periods_touched(rule: AlertRule, hour: int) -> list[int]:
    """The starts of ``rule``'s periods to evaluate again when ``hour`` changed: the one
    holding it, and the one that compares itself with that one."""
    start = period_start_hour(hour, rule.bin)
    touched = [start]
    if rule.comparison.kind is ComparisonKind.RELATIVE_TO_PAST:
        assert rule.comparison.bins_back is not None  # validated with the rule
        touched.append(start + rule.comparison.bins_back * rule.bin.hours)
    return touched


def periods_read(rule: AlertRule, start: int) -> list[int]:
    """The starts of the periods ``rule``'s evaluation of ``start`` reads."""
    if rule.comparison.kind is ComparisonKind.RELATIVE_TO_PAST:
        assert rule.comparison.bins_back is not None
        return [start, start - rule.comparison.bins_back * rule.bin.hours]
    return [start]


def period_metrics(
    registered: RegisteredModel, counters: Counters | None
) -> Mapping[str, Any] | None:
    """A period's metrics from its counters (None: no hour of it has a bin)."""
    return bin_metrics(registered.spec, registered.baseline, counters) if counters else None


@dataclass
class Outcome:
    """What evaluating some periods gave: the alerts that changed, and when each period
    that could not be judged yet is due (bin size, start hour -> ms)."""

    changed: list[Alert] = field(default_factory=list)
    due: dict[PeriodKey, int] = field(default_factory=dict)

    def judgeable(self, rule: AlertRule, start: int, now_ms: int) -> bool:
        """Whether ``rule`` can judge the period at ``start`` now; if not, note when it
        can (checked before its alerts are even read: an open hour is emitted twice a
        second while events flow, and is never judgeable)."""
        if evaluable_at(rule, start, now_ms):
            return True
        period, due = (rule.bin, start), due_ms(rule, start)
        self.due[period] = min(self.due.get(period, due), due)
        return False


def reevaluate(
    rule: AlertRule,
    registered: RegisteredModel,
    start: int,
    metrics_of: Callable[[int], Mapping[str, Any] | None],
    previous: Mapping[str, Alert],
    now_ms: int,
    outcome: Outcome,
) -> None:
    """Evaluate ``rule`` on each of its columns in the period starting at ``start``, which
    it can judge (``Outcome.judgeable``); ``metrics_of`` gives a period's metrics by start
    hour, ``previous`` the alerts as they are (by key). Changes go to ``outcome``."""
    bins = {read: metrics for read in periods_read(rule, start) if (metrics := metrics_of(read))}
    for column in rule.applies_to(registered.spec):
        key = alert_key(rule, column, start)
        before = previous.get(key)
        state = evaluate(rule, column, start, bins, registered.baseline, now_ms)
        if state is None and before is not None and before.open:
            state = _resolved_when_gone(rule, column, bins.get(start), before)
        if state is None:
            continue
        change = transition(None if before is None else before.severity, state.severity)
        if change is not None:
            outcome.changed.append(changed(before, rule, column, start, change, state, now_ms))


def _resolved_when_gone(
    rule: AlertRule, column: str | None, current: Mapping[str, Any] | None, before: Alert
) -> AlertState | None:
    """An open alert's state when its evaluation gave nothing: ok if its own metric is
    gone (the bin, or the metric in it), unchanged (None) if only a reference is."""
    if current is not None and metric_value(rule, column, current) is not None:
        return None
    return AlertState(Severity.OK, before.value, before.threshold, before.reference)
