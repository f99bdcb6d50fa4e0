"""The alert evaluator (``AlertEvaluator``) through the ``ProcessorDriver``: bins emitted,
re-emitted and deleted, rules of every bin size and comparison, evaluation delays, and
each change of state published once. Expected alerts are worked out by hand from the
counters sent (traffic and missing counts), not by the evaluator's own functions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from driftline.agents.alert_evaluator import AlertEvaluator
from driftline.agents.driver import Input, ProcessorDriver
from driftline.agents.runtime import Outgoing
from driftline.state.alert_rules import AlertRule
from driftline.state.alerts import Alert
from driftline.state.bins import HOUR_MS
from driftline.state.registered import RegisteredModel
from driftline.state.tables import TEXT
from driftline.topics.alert_rules import AlertRuleIndex
from driftline.topics.alerts import ALERT
from driftline.topics.model_bins import MODEL_BIN, ModelBin
from tests.support.models import CHURN_MODEL

MODEL = "shop/churn"
REGISTERED = RegisteredModel(CHURN_MODEL)
# A Monday 00:00 UTC, so that its day and its week start with it.
MONDAY = 490_152
assert (MONDAY + 72) % 168 == 0


class Rules:
    """The rules topic as read so far (``AlertRuleIndex``), without a broker."""

    def __init__(self) -> None:
        self.index = AlertRuleIndex()
        self.catch_ups = 0

    def add(self, **changes: Any) -> AlertRule:
        raw = {
            "rule_id": "traffic",
            "project_id": "shop",
            "model_id": "churn",
            "metric": "events",
            "comparison": {"kind": "absolute"},
            "direction": "greater",
            "critical": 100,
            "warning": 50,
            "bin": "hour",
            **changes,
        }
        rule = AlertRule.from_dict(raw, CHURN_MODEL)
        self.index.apply(rule.key, rule.to_dict())
        return rule

    def catch_up(self, timeout_s: float = 10.0) -> None:
        self.catch_ups += 1

    def of_model(self, project_id: str, model_id: str, fresh: bool = True) -> list[dict[str, Any]]:
        return self.index.of_model(project_id, model_id)

    def get(self, key: str, fresh: bool = True) -> dict[str, Any] | None:
        return self.index.get(key)


@pytest.fixture
def rules() -> Rules:
    return Rules()


@pytest.fixture
def driver(rules: Rules, tmp_path: Path) -> Iterator[ProcessorDriver]:
    evaluator = AlertEvaluator({MODEL: REGISTERED}.get, rules, "alerts", "dlq")
    # Long after every hour used here ended.
    driver = ProcessorDriver(evaluator, tmp_path / "alerts", "model-bins", now_ms=_ms(MONDAY + 400))
    yield driver
    driver.close()


def _ms(hour: int) -> int:
    return hour * HOUR_MS


def emitted(hour: int, events: int, missing_age: int = 0) -> Input:
    counts = {"n": events, "miss:age": missing_age} if events else {}
    value = {"project_id": "shop", "model_id": "churn", "counts": counts} if events else None
    return Input(TEXT.encode(MODEL), MODEL_BIN.encode(ModelBin(hour, value)))


def alerts(outgoing: Sequence[Outgoing]) -> list[Alert]:
    assert all(out.topic == "alerts" for out in outgoing)
    decoded = [ALERT.decode(out.value or b"") for out in outgoing]
    assert [TEXT.decode(out.key or b"") for out in outgoing] == [a.key for a in decoded]
    return decoded


def changes(outgoing: Sequence[Outgoing]) -> list[tuple[int, str | None, str, str]]:
    """(bin start hour, column, change, severity) of each alert published."""
    return [
        (a.bin_start_hour, a.column, a.last_change.change.value, a.severity.value)
        for a in alerts(outgoing)
    ]


def test_an_alert_fires_escalates_and_resolves_as_its_bin_is_re_emitted(
    rules: Rules, driver: ProcessorDriver
) -> None:
    rules.add()
    assert changes(driver.send([emitted(MONDAY, 60)])) == [(MONDAY, None, "fired", "warning")]
    assert changes(driver.send([emitted(MONDAY, 70)])) == []  # still a warning: nothing new
    escalated = changes(driver.send([emitted(MONDAY, 101)]))
    assert escalated == [(MONDAY, None, "escalated", "critical")]
    de_escalated = changes(driver.send([emitted(MONDAY, 80)]))
    assert de_escalated == [(MONDAY, None, "de-escalated", "warning")]
    (resolved,) = alerts(driver.send([emitted(MONDAY, 50)]))  # 50 does not breach 50
    assert resolved.last_change.change.value == "resolved"
    assert not resolved.open
    assert [c.seq for c in resolved.changes] == [1, 2, 3, 4]
    assert (resolved.value, resolved.threshold) == (50, 50)


def test_a_deleted_bin_resolves_its_open_alert(rules: Rules, driver: ProcessorDriver) -> None:
    rules.add()
    driver.send([emitted(MONDAY, 150)])
    assert changes(driver.send([emitted(MONDAY, 0)])) == [(MONDAY, None, "resolved", "ok")]
    assert changes(driver.send([emitted(MONDAY, 0)])) == []


def test_each_column_of_a_rule_is_an_alert_of_its_own(
    rules: Rules, driver: ProcessorDriver
) -> None:
    rules.add(rule_id="missing", metric="missing", columns="all", critical=5, warning=None)
    out = changes(driver.send([emitted(MONDAY, 10, missing_age=6)]))
    # Only age misses values; plan and score are counted and fine.
    assert out == [(MONDAY, "age", "fired", "critical")]


def test_a_bin_not_ended_is_judged_once_it_has(rules: Rules, driver: ProcessorDriver) -> None:
    rules.add()
    driver.now_ms = _ms(MONDAY) + 1_000
    assert changes(driver.send([emitted(MONDAY, 500)])) == []
    driver.now_ms = _ms(MONDAY + 1) - 1
    assert changes(driver.tick()) == []
    driver.now_ms = _ms(MONDAY + 1)
    assert changes(driver.tick()) == [(MONDAY, None, "fired", "critical")]
    assert changes(driver.tick()) == []


def test_the_evaluation_delay_waits_for_late_labels(rules: Rules, driver: ProcessorDriver) -> None:
    rules.add(evaluation_delay_hours=1.5)
    driver.now_ms = _ms(MONDAY + 2)  # ended, but within the delay
    assert changes(driver.send([emitted(MONDAY, 500)])) == []
    driver.now_ms = _ms(MONDAY + 2) + HOUR_MS // 2
    assert changes(driver.tick()) == [(MONDAY, None, "fired", "critical")]


def test_day_rules_sum_their_hours(rules: Rules, driver: ProcessorDriver) -> None:
    rules.add(bin="day", critical=1000, warning=None)
    hours = [emitted(MONDAY + h, 45) for h in range(23)]  # 23 * 45 = 1035
    out = alerts(driver.send(hours))
    assert [(a.bin_start_hour, a.bin.value, a.value) for a in out] == [(MONDAY, "day", 1035)]
    # One hour re-emitted lower brings the day to 1035 - 45 + 10 = 1000: resolved.
    (resolved,) = alerts(driver.send([emitted(MONDAY + 5, 10)]))
    assert (resolved.value, resolved.open) == (1000, False)


def test_a_relative_rule_is_judged_again_when_its_reference_changes(
    rules: Rules, driver: ProcessorDriver
) -> None:
    rules.add(comparison={"kind": "relative_to_past", "bins_back": 24}, critical=1.0,
              warning=None)  # fmt: skip
    assert changes(driver.send([emitted(MONDAY + 24, 30)])) == []  # no reference yet
    # Yesterday's bin arrives: 30 is +200 % of 10, critical.
    fired = alerts(driver.send([emitted(MONDAY, 10)]))
    assert [(a.bin_start_hour, a.value, a.reference) for a in fired] == [(MONDAY + 24, 2.0, 10)]
    # Yesterday corrected to 20: +50 %, resolved.
    assert changes(driver.send([emitted(MONDAY, 20)])) == [(MONDAY + 24, None, "resolved", "ok")]


def test_a_change_is_published_once_however_often_the_bin_comes(
    rules: Rules, driver: ProcessorDriver
) -> None:
    rules.add()
    first = driver.send([emitted(MONDAY, 200)])
    again = driver.send([emitted(MONDAY, 200), emitted(MONDAY, 201)])
    assert len(first) == 1
    assert again == []


def test_deleting_a_rule_resolves_its_open_alerts_only(
    rules: Rules, driver: ProcessorDriver
) -> None:
    doomed = rules.add()
    rules.add(rule_id="kept", critical=10, warning=None)
    fired = alerts(driver.send([emitted(MONDAY, 500), emitted(MONDAY + 1, 60)]))
    assert sorted((a.rule_id, a.bin_start_hour) for a in fired) == [
        ("kept", MONDAY), ("kept", MONDAY + 1), ("traffic", MONDAY), ("traffic", MONDAY + 1),
    ]  # fmt: skip
    assert driver.tick() == []  # every rule still there
    rules.index.apply(doomed.key, None)
    resolved = alerts(driver.tick())
    assert sorted((a.rule_id, a.bin_start_hour, a.open) for a in resolved) == [
        ("traffic", MONDAY, False), ("traffic", MONDAY + 1, False),
    ]  # fmt: skip
    assert all(a.last_change.change.value == "resolved" for a in resolved)
    assert driver.tick() == []


def test_rules_are_caught_up_once_per_batch(rules: Rules, driver: ProcessorDriver) -> None:
    rules.add()
    driver.send([emitted(MONDAY + h, 10) for h in range(10)])
    assert rules.catch_ups == 1


def test_a_model_without_rules_or_registration_publishes_nothing(
    tmp_path: Path, rules: Rules
) -> None:
    evaluator = AlertEvaluator({}.get, rules, "alerts", "dlq")
    driver = ProcessorDriver(evaluator, tmp_path / "none", "model-bins", now_ms=_ms(MONDAY + 400))
    rules.add()
    assert driver.send([emitted(MONDAY, 500)]) == []
    driver.close()


def test_a_record_that_is_not_a_model_bin_is_dead_lettered(driver: ProcessorDriver) -> None:
    (letter,) = driver.dead_letter(
        driver.message(0, Input(TEXT.encode(MODEL), b"{}")), "could not be applied"
    )
    assert letter.topic == "dlq"
