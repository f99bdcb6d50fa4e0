"""The alert listing's index (``topics.alerts.AlertIndex``): newest record per key, a
model's alerts filtered by state, rule, bin size and bin start, in listing order, paged
after a position so that alerts added between pages neither repeat nor go missing."""

from __future__ import annotations

from driftline.state.alert_evaluation import Severity
from driftline.state.alerts import Alert
from driftline.state.bins import HOUR_MS
from driftline.state.periods import Period
from driftline.topics.alerts import (
    ALERT,
    AlertIndex,
    AlertSelection,
    AlertStateFilter,
)
from tests.support.alerts import churn_alert
from tests.support.models import HOUR0

OK, WARNING, CRITICAL = Severity.OK, Severity.WARNING, Severity.CRITICAL
CHURN = AlertSelection("shop", "churn")


def index_of(*alerts: Alert) -> AlertIndex:
    index = AlertIndex()
    for alert in alerts:
        index.apply(alert.key, alert)
    return index


def listed(index: AlertIndex, selection: AlertSelection = CHURN) -> list[str]:
    alerts, after = index.page(selection, None, 1000)
    assert after is None
    return [alert.key for alert in alerts]


def test_the_newest_record_of_an_alert_wins_and_a_tombstone_removes_it() -> None:
    fired = churn_alert(WARNING)
    resolved = churn_alert(WARNING, OK)
    index = index_of(fired, resolved)
    assert index.page(CHURN, None, 10) == ([resolved], None)
    index.apply(fired.key, None)
    assert index.page(CHURN, None, 10) == ([], None)


def test_newest_bin_first_then_rule_then_column() -> None:
    alerts = [
        churn_alert(WARNING, rule_id="b", column="age", hours_after=1),
        churn_alert(WARNING, rule_id="a", column="plan", hours_after=1),
        churn_alert(WARNING, rule_id="a", column="age", hours_after=1),
        churn_alert(WARNING, rule_id="a", column="age", hours_after=5),
        churn_alert(WARNING, rule_id="z", column="age", hours_after=0),
    ]
    expected = [alerts[3], alerts[2], alerts[1], alerts[0], alerts[4]]
    assert listed(index_of(*alerts)) == [alert.key for alert in expected]


def test_only_the_models_alerts() -> None:
    ours = churn_alert(WARNING)
    assert listed(index_of(ours), AlertSelection("shop", "churn2")) == []
    assert listed(index_of(ours), AlertSelection("shop2", "churn")) == []
    assert listed(index_of(ours)) == [ours.key]


def test_filtered_by_state() -> None:
    firing = churn_alert(WARNING, CRITICAL, column="age")
    resolved = churn_alert(CRITICAL, OK, column="plan")
    index = index_of(firing, resolved)
    by_state = {
        state: listed(index, AlertSelection("shop", "churn", state=state))
        for state in AlertStateFilter
    }
    assert by_state == {
        AlertStateFilter.OPEN: [firing.key],
        AlertStateFilter.RESOLVED: [resolved.key],
        AlertStateFilter.ALL: [firing.key, resolved.key],
    }


def test_filtered_by_rule_and_bin_size() -> None:
    hourly = churn_alert(WARNING, rule_id="hourly")
    daily = churn_alert(WARNING, rule_id="daily", period=Period.DAY)
    weekly = churn_alert(WARNING, rule_id="weekly", period=Period.WEEK)
    index = index_of(hourly, daily, weekly)
    assert listed(index, AlertSelection("shop", "churn", rule_id="daily")) == [daily.key]
    assert listed(index, AlertSelection("shop", "churn", rule_id="other")) == []
    assert listed(index, AlertSelection("shop", "churn", bin=Period.WEEK)) == [weekly.key]
    assert listed(index, AlertSelection("shop", "churn", bin=Period.HOUR)) == [hourly.key]


def test_a_time_range_selects_by_bin_start() -> None:
    alerts = [churn_alert(WARNING, hours_after=hour) for hour in range(4)]
    index = index_of(*alerts)
    hour = HOUR0 + HOUR_MS  # the start of the second alert's bin

    def between(start: int | None, end: int | None) -> list[str]:
        return listed(index, AlertSelection("shop", "churn", start_ms=start, end_ms=end))

    assert between(hour, hour + 2 * HOUR_MS) == [alerts[2].key, alerts[1].key]
    assert between(hour + 1, None) == [alerts[3].key, alerts[2].key]
    assert between(None, hour) == [alerts[0].key]
    assert between(hour, hour) == []


def test_pages_go_on_after_the_last_alert_shown() -> None:
    alerts = [churn_alert(WARNING, hours_after=hour) for hour in range(5)]
    index = index_of(*alerts)
    first, after = index.page(CHURN, None, 2)
    assert first == [alerts[4], alerts[3]]
    assert after is not None
    # A newer alert and one on a page already read: neither moves the next pages.
    newer = churn_alert(CRITICAL, hours_after=9)
    index.apply(newer.key, newer)
    second, after = index.page(CHURN, after, 2)
    assert second == [alerts[2], alerts[1]]
    last, after = index.page(CHURN, after, 2)
    assert (last, after) == ([alerts[0]], None)
    assert index.page(CHURN, None, 6) == ([newer, *reversed(alerts)], None)


def test_a_record_reads_back_as_published() -> None:
    alert = churn_alert(WARNING, CRITICAL, OK, period=Period.WEEK)
    assert ALERT.decode(ALERT.encode(alert)) == alert
