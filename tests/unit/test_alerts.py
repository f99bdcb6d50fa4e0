"""The alert record (``state.alerts``) and what a changed hour re-evaluates
(``state.alerting``), pure."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from driftline.state.alert_evaluation import AlertState, Change, Severity
from driftline.state.alert_rules import AlertRule
from driftline.state.alerting import Outcome, periods_read, periods_touched, reevaluate
from driftline.state.alerts import HISTORY_KEPT, Alert, alert_key, changed, withdrawn
from driftline.state.bins import HOUR_MS
from driftline.state.registered import RegisteredModel
from tests.support.models import CHURN_MODEL

MONDAY = 490_152  # Monday 00:00 UTC, hours since the epoch


def rule(**changes: Any) -> AlertRule:
    raw = {"rule_id": "r", "project_id": "shop", "model_id": "churn", "metric": "missing",
           "columns": "all", "comparison": {"kind": "absolute"}, "direction": "greater",
           "critical": 10, "bin": "hour", **changes}  # fmt: skip
    return AlertRule.from_dict(raw, CHURN_MODEL)


def test_an_alert_key_names_rule_bin_and_column_with_the_column_last() -> None:
    assert alert_key(rule(), "a/b", MONDAY) == f"shop/churn/r/hour/{MONDAY}/a/b"
    assert alert_key(rule(metric="events", columns=None), None, MONDAY).endswith(f"/{MONDAY}/")


@given(
    severities=st.lists(st.sampled_from(list(Severity)), min_size=1, max_size=8),
    values=st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=8, max_size=8),
    column=st.sampled_from(["age", None]),
)
def test_history_numbers_changes_and_survives_the_wire(
    severities: list[Severity], values: list[float], column: str | None
) -> None:
    r = rule() if column else rule(metric="events", columns=None)
    alert: Alert | None = None
    for number, (severity, value) in enumerate(zip(severities, values, strict=False)):
        state = AlertState(severity, value, 10.0, None if number % 2 else 3.0)
        alert = changed(alert, r, column, MONDAY, Change.FIRED, state, number)
        assert Alert.from_dict(alert.to_dict()) == alert
    assert alert is not None
    assert [c.seq for c in alert.changes] == list(range(1, len(severities) + 1))
    assert alert.change_id == f"{alert.key}#{len(severities)}"
    assert alert.to_dict()["bin_end_ms"] - alert.to_dict()["bin_start_ms"] == HOUR_MS


def test_history_keeps_the_newest_changes() -> None:
    alert = None
    for number in range(HISTORY_KEPT + 5):
        state = AlertState(Severity.WARNING if number % 2 else Severity.OK, number, 10, None)
        alert = changed(alert, rule(), "age", MONDAY, Change.FIRED, state, number)
    assert alert is not None
    assert len(alert.changes) == HISTORY_KEPT
    assert alert.changes[-1].seq == HISTORY_KEPT + 5


def test_a_withdrawn_alert_is_resolved_with_its_last_values() -> None:
    state = AlertState(Severity.CRITICAL, 42.0, 10.0, None)
    fired = changed(None, rule(), "age", MONDAY, Change.FIRED, state, 1)
    gone = withdrawn(fired, 2)
    assert (gone.open, gone.value, gone.threshold) == (False, 42.0, 10.0)
    assert [(c.change, c.at_ms) for c in gone.changes] == [(Change.FIRED, 1), (Change.RESOLVED, 2)]


def test_a_changed_hour_touches_its_period_and_the_one_looking_back_at_it() -> None:
    hour = MONDAY + 30  # Tuesday 06:00
    assert periods_touched(rule(), hour) == [hour]
    assert periods_touched(rule(bin="day"), hour) == [MONDAY + 24]
    assert periods_touched(rule(bin="week"), hour) == [MONDAY]
    back = {"kind": "relative_to_past", "bins_back": 24}
    assert periods_touched(rule(comparison=back), hour) == [hour, hour + 24]
    assert periods_read(rule(comparison=back), hour) == [hour, hour - 24]
    weekly = rule(bin="week", comparison={"kind": "relative_to_past", "bins_back": 1})
    assert periods_touched(weekly, hour) == [MONDAY, MONDAY + 168]
    assert periods_read(weekly, MONDAY + 168) == [MONDAY + 168, MONDAY]


def test_a_deleted_bin_resolves_its_open_alert() -> None:
    """A bin gone (every event deleted or moved away) resolves an open alert, warning or
    critical, with its last values; an alert already resolved, or none, gives nothing."""
    r, registered, ended = rule(), RegisteredModel(CHURN_MODEL), (MONDAY + 2) * HOUR_MS
    for severity in (Severity.CRITICAL, Severity.WARNING):
        state = AlertState(severity, 12.0, 10.0, None)
        before = changed(None, r, "age", MONDAY, Change.FIRED, state, 1)
        outcome = Outcome()
        reevaluate(r, registered, MONDAY, lambda start: None, {before.key: before}, ended, outcome)
        (after,) = outcome.changed
        assert (after.last_change.change, after.open, after.value) == (Change.RESOLVED, False, 12.0)
        quiet = Outcome()
        reevaluate(r, registered, MONDAY, lambda start: None, {after.key: after}, ended, quiet)
        assert quiet.changed == []
    nothing = Outcome()
    reevaluate(r, registered, MONDAY, lambda start: None, {}, ended, nothing)
    assert nothing.changed == []
