"""Alert evaluation as pure functions (SPEC §3 "Alerts"): thresholds and directions,
warning -> critical -> resolved as a bin is re-emitted, look-backs across missing bins,
baseline-relative rules, the evaluation delay, and each change of state published once."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.state.alert_evaluation import (
    AlertState,
    Change,
    EmittedBins,
    Severity,
    evaluate,
    metric_value,
    transition,
)
from driftline.state.alert_rules import AlertRule
from driftline.state.baseline import BaselineProfile, ColumnProfile
from driftline.state.bins import HOUR_MS, Counters
from driftline.state.metrics import bin_metrics
from driftline.state.periods import Period
from driftline.state.spec import ColumnType
from tests.support.models import CHURN_MODEL

SPEC = CHURN_MODEL
BASELINE = BaselineProfile(
    {
        "age": ColumnProfile("age", ColumnType.INT, edges=(30.0,), histogram=(60, 20),
                             nulls=20, rows=100, mismatches=0),
        "plan": ColumnProfile("plan", ColumnType.CATEGORY, categories=("free",),
                              histogram=(100, 0), rows=100),
        "score": ColumnProfile("score", ColumnType.FLOAT, edges=(0.5,), histogram=(50, 50),
                               rows=100),
    },
    rows=100,
)  # fmt: skip
HOUR = 490_000  # an hour bin's start, in hours since the epoch
LATER = 10**15  # a now_ms long after every bin here: every bin is due


def rule(**changes: Any) -> AlertRule:
    raw: dict[str, Any] = {
        "rule_id": "r",
        "project_id": "shop",
        "model_id": "churn",
        "metric": "missing_rate",
        "columns": ["age"],
        "comparison": {"kind": "absolute"},
        "direction": "greater",
        "critical": 0.5,
        "warning": 0.2,
        "bin": "hour",
    }
    raw.update(changes)
    return AlertRule.from_dict(raw, SPEC)


def emitted(**counters: int) -> dict[str, Any]:
    """The ``metrics`` of a bin with these counters (``miss_age`` stands for ``miss:age``)."""
    named: Counters = {name.replace("_", ":", 1) if name.startswith(("miss_", "h_")) else name:
                       count for name, count in counters.items()}  # fmt: skip
    return bin_metrics(SPEC, BASELINE, named)


def missing(events: int, missing_age: int) -> dict[str, Any]:
    return emitted(n=events, miss_age=missing_age)


def severity_of(r: AlertRule, bins: EmittedBins, start: int = HOUR) -> Severity | None:
    state = evaluate(r, "age", start, bins, BASELINE, LATER)
    return None if state is None else state.severity


# --- thresholds and directions ---------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "critical", "warning", "value", "expected"),
    [
        ("greater", 0.5, 0.2, 0.1, Severity.OK),
        ("greater", 0.5, 0.2, 0.2, Severity.OK),  # on the threshold: not beyond it
        ("greater", 0.5, 0.2, 0.3, Severity.WARNING),
        ("greater", 0.5, 0.2, 0.5, Severity.WARNING),
        ("greater", 0.5, 0.2, 0.6, Severity.CRITICAL),
        ("greater", 0.5, None, 0.3, Severity.OK),
        ("greater", 0.5, None, 0.6, Severity.CRITICAL),
        ("lesser", 0.2, 0.5, 0.6, Severity.OK),
        ("lesser", 0.2, 0.5, 0.5, Severity.OK),
        ("lesser", 0.2, 0.5, 0.4, Severity.WARNING),
        ("lesser", 0.2, 0.5, 0.2, Severity.WARNING),
        ("lesser", 0.2, 0.5, 0.1, Severity.CRITICAL),
        ("lesser", 0.2, None, 0.4, Severity.OK),
        ("lesser", 0.2, None, 0.0, Severity.CRITICAL),
    ],
)
def test_thresholds_and_directions(
    direction: str, critical: float, warning: float | None, value: float, expected: Severity
) -> None:
    r = rule(direction=direction, critical=critical, warning=warning)
    state = evaluate(r, "age", HOUR, {HOUR: missing(10, round(value * 10))}, BASELINE, LATER)
    assert state is not None
    assert (state.severity, state.value, state.reference) == (expected, value, None)


@pytest.mark.parametrize(("value", "threshold"), [(0.1, 0.2), (0.3, 0.2), (0.6, 0.5)])
def test_the_state_names_the_threshold_breached_or_the_next(value: float, threshold: float) -> None:
    state = evaluate(rule(), "age", HOUR, {HOUR: missing(10, round(value * 10))}, BASELINE, LATER)
    assert state is not None
    assert state.threshold == threshold


# --- where each metric is read ---------------------------------------------------------


def test_model_level_metrics_and_shares() -> None:
    metrics = emitted(n=8, labelled=2, delay_ms=800)
    assert metric_value(rule(metric="events", columns=None), None, metrics) == 8
    assert metric_value(rule(metric="labelled", columns=None), None, metrics) == 2
    assert metric_value(rule(metric="labelled_share", columns=None), None, metrics) == 0.25
    assert metric_value(rule(metric="mean_ingest_delay_ms", columns=None), None, metrics) == 100


def test_column_metrics_are_read_for_their_column() -> None:
    metrics = emitted(n=10, miss_age=1, **{"type:plan": 2, "range:score": 5})
    assert metric_value(rule(metric="missing"), "age", metrics) == 1
    assert metric_value(rule(metric="missing_rate"), "age", metrics) == 0.1
    assert metric_value(rule(metric="type_mismatch_rate"), "plan", metrics) == 0.2
    assert metric_value(rule(metric="range_violation_rate"), "score", metrics) == 0.5
    assert metric_value(rule(metric="range_violation"), "age", metrics) == 0


def test_drift_is_read_per_column_and_absent_without_values() -> None:
    metrics = emitted(n=10, **{"h:age:0": 10})
    r = rule(metric="js_distance", critical=0.9, warning=None)
    assert metric_value(r, "age", metrics) == metrics["drift"]["age"]["js_distance"]
    assert metric_value(r, "plan", metrics) is None  # no plan values in the bin


def test_performance_is_absent_without_labelled_events_and_never_alerts() -> None:
    r = rule(metric="accuracy", columns=None, direction="lesser", critical=0.5, warning=None)
    unlabelled = emitted(n=10, labelled=0)
    assert "performance" not in unlabelled
    assert evaluate(r, None, HOUR, {HOUR: unlabelled}, BASELINE, LATER) is None
    labelled = emitted(n=10, labelled=10, perf_n=10, tp=2, tn=2, fp=3, fn=3)
    state = evaluate(r, None, HOUR, {HOUR: labelled}, BASELINE, LATER)
    assert state == AlertState(Severity.CRITICAL, 0.4, 0.5, None)


def test_a_ratio_without_denominator_is_absent_not_zero() -> None:
    r = rule(metric="precision", columns=None, direction="lesser", critical=0.5, warning=None)
    no_predicted_positive = emitted(n=4, labelled=4, perf_n=4, tn=2, fn=2)
    assert evaluate(r, None, HOUR, {HOUR: no_predicted_positive}, BASELINE, LATER) is None


def test_a_bin_not_given_is_not_evaluable() -> None:
    assert evaluate(rule(), "age", HOUR, {}, BASELINE, LATER) is None


# --- evaluation delay ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "delay_hours", "due_ms"),
    [
        (Period.HOUR, 0, (HOUR + 1) * HOUR_MS),
        (Period.HOUR, 6, (HOUR + 7) * HOUR_MS),
        (Period.DAY, 2, (HOUR + 26) * HOUR_MS),
        (Period.WEEK, 0, (HOUR + 168) * HOUR_MS),
        (Period.HOUR, 0.25, (HOUR + 1) * HOUR_MS + 15 * 60_000),
    ],
)
def test_evaluated_once_the_bin_ended_and_the_delay_passed(
    period: Period, delay_hours: float, due_ms: int
) -> None:
    r = rule(bin=period.value, evaluation_delay_hours=delay_hours)
    bins = {HOUR: missing(10, 9)}  # HOUR is also a day's and a week's start below
    assert evaluate(r, "age", HOUR, bins, BASELINE, due_ms - 1) is None
    state = evaluate(r, "age", HOUR, bins, BASELINE, due_ms)
    assert state is not None
    assert state.severity is Severity.CRITICAL


def test_late_labels_fire_a_performance_alert_after_its_delay() -> None:
    r = rule(metric="accuracy", columns=None, direction="lesser", critical=0.5, warning=None,
             evaluation_delay_hours=3)  # fmt: skip
    before = {HOUR: emitted(n=10)}
    after = {HOUR: emitted(n=10, labelled=10, perf_n=10, tp=1, tn=1, fp=4, fn=4)}
    due_ms = (HOUR + 4) * HOUR_MS
    assert evaluate(r, None, HOUR, before, BASELINE, due_ms) is None
    assert evaluate(r, None, HOUR, after, BASELINE, due_ms - 1) is None
    state = evaluate(r, None, HOUR, after, BASELINE, due_ms)
    assert state is not None
    assert transition(None, state.severity) is Change.FIRED


# --- relative to the past --------------------------------------------------------------


def test_relative_to_the_past_bin() -> None:
    r = rule(comparison={"kind": "relative_to_past", "bins_back": 24}, critical=2.0, warning=1.0)
    bins = {HOUR - 24: missing(10, 2), HOUR - 1: missing(10, 9), HOUR: missing(10, 5)}
    state = evaluate(r, "age", HOUR, bins, BASELINE, LATER)
    assert state == AlertState(Severity.WARNING, pytest.approx(1.5), 1.0, 0.2)


def test_a_fall_is_a_negative_relative_value() -> None:
    r = rule(metric="events", columns=None, comparison={"kind": "relative_to_past",
             "bins_back": 1}, direction="lesser", critical=-0.5, warning=-0.25)  # fmt: skip
    bins = {HOUR - 1: emitted(n=100), HOUR: emitted(n=40)}
    state = evaluate(r, None, HOUR, bins, BASELINE, LATER)
    assert state == AlertState(Severity.CRITICAL, -0.6, -0.5, 100.0)


@pytest.mark.parametrize("bins_back", [1, 24, 168])
def test_a_missing_past_bin_is_not_evaluable(bins_back: int) -> None:
    """A bin without events is never emitted, so "missing" may be zero events or a bin not
    given: neither is a reference, and a rule that read it as 0 would divide by zero."""
    r = rule(comparison={"kind": "relative_to_past", "bins_back": bins_back})
    others = {HOUR - back: missing(10, 1) for back in (1, 24, 168) if back != bins_back}
    assert severity_of(r, {**others, HOUR: missing(10, 9)}) is None
    assert severity_of(r, {HOUR - bins_back: missing(10, 1), HOUR: missing(10, 9)}) is not None


def test_a_past_bin_without_the_metric_or_with_zero_is_not_evaluable() -> None:
    r = rule(comparison={"kind": "relative_to_past", "bins_back": 1})
    assert severity_of(r, {HOUR - 1: missing(10, 0), HOUR: missing(10, 9)}) is None
    accuracy = rule(metric="accuracy", columns=None, comparison={"kind": "relative_to_past",
                    "bins_back": 1}, direction="lesser", critical=-0.5, warning=None)  # fmt: skip
    bins = {HOUR - 1: emitted(n=5), HOUR: emitted(n=5, labelled=5, perf_n=5, tp=1, fp=4)}
    assert evaluate(accuracy, None, HOUR, bins, BASELINE, LATER) is None


@pytest.mark.parametrize(("period", "step"), [(Period.DAY, 24), (Period.WEEK, 168)])
def test_look_back_one_day_or_week_bin(period: Period, step: int) -> None:
    r = rule(bin=period.value, comparison={"kind": "relative_to_past", "bins_back": 1},
             critical=1.0, warning=None)  # fmt: skip
    bins = {HOUR - step: missing(100, 10), HOUR: missing(100, 30)}
    assert severity_of(r, bins) is Severity.CRITICAL
    assert severity_of(r, {HOUR - 1: missing(100, 10), HOUR: missing(100, 30)}) is None


# --- relative to the baseline ----------------------------------------------------------


def test_relative_to_the_baseline_rate() -> None:
    r = rule(comparison={"kind": "relative_to_baseline"}, critical=1.0, warning=0.5)
    # The baseline's age is missing in 20 of 100 rows: 0.2.
    state = evaluate(r, "age", HOUR, {HOUR: missing(10, 5)}, BASELINE, LATER)
    assert state == AlertState(Severity.CRITICAL, pytest.approx(1.5), 1.0, 0.2)
    state = evaluate(r, "age", HOUR, {HOUR: missing(10, 3)}, BASELINE, LATER)
    assert state == AlertState(Severity.OK, pytest.approx(0.5), 0.5, 0.2)


def test_without_a_baseline_value_not_evaluable() -> None:
    r = rule(comparison={"kind": "relative_to_baseline"}, columns="all")
    bins = {HOUR: emitted(n=10, miss_age=5, **{"miss:plan": 5})}
    assert evaluate(r, "age", HOUR, bins, None, LATER) is None  # no baseline at all
    assert evaluate(r, "plan", HOUR, bins, BASELINE, LATER) is None  # baseline rate 0
    no_age = BaselineProfile({"plan": BASELINE.columns["plan"]}, rows=100)
    assert evaluate(r, "age", HOUR, bins, no_age, LATER) is None  # column not profiled
    empty = BaselineProfile({"age": ColumnProfile("age", ColumnType.INT, edges=(30.0,))}, rows=0)
    assert evaluate(r, "age", HOUR, bins, empty, LATER) is None  # no baseline rows


# --- changes of state ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "current", "change"),
    [
        (None, None, None),
        (None, Severity.OK, None),
        (None, Severity.WARNING, Change.FIRED),
        (None, Severity.CRITICAL, Change.FIRED),
        (Severity.OK, None, None),
        (Severity.OK, Severity.OK, None),
        (Severity.OK, Severity.WARNING, Change.FIRED),
        (Severity.OK, Severity.CRITICAL, Change.FIRED),
        (Severity.WARNING, None, None),
        (Severity.WARNING, Severity.OK, Change.RESOLVED),
        (Severity.WARNING, Severity.WARNING, None),
        (Severity.WARNING, Severity.CRITICAL, Change.ESCALATED),
        (Severity.CRITICAL, None, None),
        (Severity.CRITICAL, Severity.OK, Change.RESOLVED),
        (Severity.CRITICAL, Severity.WARNING, Change.DE_ESCALATED),
        (Severity.CRITICAL, Severity.CRITICAL, None),
    ],
)
def test_every_transition(
    previous: Severity | None, current: Severity | None, change: Change | None
) -> None:
    assert transition(previous, current) is change


def test_re_emitted_bins_warning_critical_resolved_each_change_once() -> None:
    """One bin re-emitted as late data rewrites it: each change is published once, and a
    re-emission with the same result publishes nothing."""
    r = rule()
    emissions = [missing(10, 1), missing(10, 3), missing(10, 3), missing(10, 8),
                 missing(20, 8), missing(20, 4), missing(40, 4), missing(40, 2)]  # fmt: skip
    published, previous = [], None
    for metrics in emissions:
        current = severity_of(r, {HOUR: metrics})
        change = transition(previous, current)
        if change is not None:
            published.append(change)
        previous = current if current is not None else previous
    assert published == [Change.FIRED, Change.ESCALATED, Change.DE_ESCALATED, Change.RESOLVED]


def test_not_evaluable_keeps_an_open_alert_open() -> None:
    r = rule(comparison={"kind": "relative_to_past", "bins_back": 1})
    firing = severity_of(r, {HOUR - 1: missing(10, 1), HOUR: missing(10, 9)})
    assert firing is Severity.CRITICAL
    past_deleted = severity_of(r, {HOUR: missing(10, 9)})
    assert transition(firing, past_deleted) is None


@given(st.lists(st.none() | st.sampled_from(list(Severity)), max_size=30))
def test_published_changes_replay_to_the_last_evaluated_severity(
    evaluations: list[Severity | None],
) -> None:
    """Whatever the sequence of evaluations, the published changes say exactly when the
    alert opened, moved and closed: each one moves the alert, and replayed they end where
    the evaluations ended."""
    previous: Severity | None = None
    replayed = Severity.OK
    for current in evaluations:
        change = transition(previous, current)
        if change is not None:
            assert current is not None
            assert current != (previous or Severity.OK)
            replayed = current
        if current is not None:
            previous = current
    assert replayed == (previous or Severity.OK)
