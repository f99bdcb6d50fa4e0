"""Alert rules (SPEC §3 "Alerts"): validation against the model, plain-word errors, the
round trip of the stored form, and a catalogue that names exactly what bins emit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.state.alert_rules import (
    ALL_COLUMNS,
    LOOK_BACKS,
    METRICS,
    AlertRule,
    ChannelType,
    Comparison,
    ComparisonKind,
    InvalidAlertRuleError,
    Level,
    monitored_columns,
)
from driftline.state.baseline import profile_baseline
from driftline.state.bins import ContributionRules, Counters, add_into
from driftline.state.events import StoredEvent
from driftline.state.metrics import bin_metrics
from driftline.state.periods import Period
from driftline.state.spec import ModelSpec, Task
from tests.support.models import CHURN_MODEL, PRICE_MODEL

BINARY = CHURN_MODEL
MULTICLASS = ModelSpec(
    project_id="shop",
    model_id="tier",
    inputs=("age",),
    outputs=("p_a", "p_b"),
    targets=("tier",),
    task=Task.MULTICLASS_CLASSIFICATION,
    classes=("a", "b"),
)
REGRESSION = PRICE_MODEL
NO_TARGETS = replace(BINARY, targets=())


def raw_rule(**changes: Any) -> dict[str, Any]:
    """A valid rule for BINARY, with ``changes`` applied (a value ``...`` drops the field)."""
    raw: dict[str, Any] = {
        "rule_id": "drift-age",
        "project_id": "shop",
        "model_id": "churn",
        "metric": "js_distance",
        "columns": ["age"],
        "comparison": {"kind": "absolute"},
        "direction": "greater",
        "critical": 0.3,
        "warning": 0.2,
        "bin": "hour",
        "evaluation_delay_hours": 0,
        "channels": [],
    }
    raw.update(changes)
    return {name: value for name, value in raw.items() if value is not ...}


def refused(raw: Any, spec: ModelSpec = BINARY) -> str:
    with pytest.raises(InvalidAlertRuleError) as caught:
        AlertRule.from_dict(raw, spec)
    return str(caught.value)


# --- accepted rules --------------------------------------------------------------------


def test_a_rule_keeps_what_it_was_given() -> None:
    rule = AlertRule.from_dict(raw_rule(), BINARY)
    assert rule.key == "shop/churn/drift-age"
    assert rule.metric == "js_distance"
    assert rule.columns == ("age",)
    assert rule.comparison == Comparison(ComparisonKind.ABSOLUTE)
    assert (rule.critical, rule.warning, rule.bin) == (0.3, 0.2, Period.HOUR)


def test_defaults_no_warning_no_delay_no_channels() -> None:
    rule = AlertRule.from_dict(
        raw_rule(warning=..., evaluation_delay_hours=..., channels=...), BINARY
    )
    assert (rule.warning, rule.evaluation_delay_hours, rule.channels) == (None, 0, ())


def test_all_columns_resolve_against_the_spec() -> None:
    rule = AlertRule.from_dict(raw_rule(columns="all"), BINARY)
    assert rule.columns == ALL_COLUMNS
    assert rule.applies_to(BINARY) == ("age", "plan", "score")


def test_a_model_level_metric_applies_once() -> None:
    rule = AlertRule.from_dict(raw_rule(metric="events", columns=None), BINARY)
    assert rule.columns is None
    assert rule.applies_to(BINARY) == (None,)


def test_channels_of_every_type() -> None:
    channels = [
        {"type": "webhook", "url": "https://hooks.example/a", "secret": "s3cret"},
        {"type": "slack", "url": "https://hooks.slack.example/T/B/x"},
        {"type": "pagerduty", "url": "https://events.pd.example/v2", "routing_key": "R1"},
    ]
    rule = AlertRule.from_dict(raw_rule(channels=channels), BINARY)
    assert [c.type for c in rule.channels] == list(ChannelType)
    assert rule.to_dict()["channels"] == channels


@pytest.mark.parametrize(
    ("period", "bins_back"), [(p, back) for p, backs in LOOK_BACKS.items() for back in backs]
)
def test_every_allowed_look_back(period: Period, bins_back: int) -> None:
    comparison = {"kind": "relative_to_past", "bins_back": bins_back}
    rule = AlertRule.from_dict(raw_rule(bin=period.value, comparison=comparison), BINARY)
    assert rule.comparison == Comparison(ComparisonKind.RELATIVE_TO_PAST, bins_back)


def test_lesser_takes_a_warning_above_critical() -> None:
    rule = AlertRule.from_dict(
        raw_rule(metric="auc", columns=None, direction="lesser", critical=0.6, warning=0.7),
        BINARY,
    )
    assert (rule.critical, rule.warning) == (0.6, 0.7)


def valid_raws(spec: ModelSpec) -> st.SearchStrategy[dict[str, Any]]:
    """Every shape a valid rule for ``spec`` can take."""
    offered = [m for m in METRICS.values() if spec.task in m.tasks]
    return st.sampled_from(offered).flatmap(lambda metric: _raw_for(spec, metric.name))


def _raw_for(spec: ModelSpec, metric: str) -> st.SearchStrategy[dict[str, Any]]:
    definition = METRICS[metric]
    columns: st.SearchStrategy[Any] = (
        st.none()
        if definition.level is Level.MODEL
        else st.just("all")
        | st.lists(st.sampled_from(monitored_columns(spec)), min_size=1, unique=True)
    )
    return st.builds(
        _assembled,
        st.just(spec),
        st.just(metric),
        columns,
        st.sampled_from(list(Period)),
        st.data(),
    )


def _assembled(
    spec: ModelSpec, metric: str, columns: Any, period: Period, data: st.DataObject
) -> dict[str, Any]:
    kinds = [ComparisonKind.ABSOLUTE, ComparisonKind.RELATIVE_TO_PAST]
    if METRICS[metric].baseline is not None:
        kinds.append(ComparisonKind.RELATIVE_TO_BASELINE)
    kind = data.draw(st.sampled_from(kinds))
    comparison: dict[str, Any] = {"kind": kind.value}
    if kind is ComparisonKind.RELATIVE_TO_PAST:
        comparison["bins_back"] = data.draw(st.sampled_from(LOOK_BACKS[period]))
    finite = st.floats(-1e6, 1e6, allow_nan=False)
    critical = data.draw(finite)
    direction = data.draw(st.sampled_from(["greater", "lesser"]))
    gap = data.draw(st.none() | st.floats(0.001, 1e3))
    warning = None if gap is None else critical - gap if direction == "greater" else critical + gap
    return {
        "rule_id": data.draw(st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True)),
        "project_id": spec.project_id,
        "model_id": spec.model_id,
        "metric": metric,
        "columns": columns,
        "comparison": comparison,
        "direction": direction,
        "critical": critical,
        "warning": warning,
        "bin": period.value,
        "evaluation_delay_hours": data.draw(
            st.integers(0, 24 * 14) | st.floats(0, 24 * 14, allow_nan=False)
        ),
        "channels": data.draw(st.lists(st.sampled_from(CHANNELS), max_size=3)),
    }


CHANNELS = [
    {"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "k"},
    {"type": "slack", "url": "https://hooks.example/slack"},
    {"type": "pagerduty", "url": "https://pd.example/enqueue", "routing_key": "rk"},
]


@given(st.sampled_from([BINARY, MULTICLASS, REGRESSION]).flatmap(valid_raws))
def test_to_dict_round_trips(raw: dict[str, Any]) -> None:
    spec = {s.model_id: s for s in (BINARY, MULTICLASS, REGRESSION)}[raw["model_id"]]
    rule = AlertRule.from_dict(raw, spec)
    assert AlertRule.from_dict(rule.to_dict(), spec) == rule
    assert rule.to_dict() == {**raw, "critical": float(raw["critical"])} | (
        {"warning": float(raw["warning"])} if raw["warning"] is not None else {}
    )


# --- refused rules, in plain words -----------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"metric": "jsd"}, 'metric "jsd" is unknown; use one of events, labelled'),
        ({"metric": None}, "an alert rule needs metric"),
        ({"rule_id": "drift age"}, "rule_id must be 1 to 64 characters"),
        ({"rule_id": "x" * 65}, "rule_id must be 1 to 64 characters"),
        ({"rule_id": ""}, "rule_id must be 1 to 64 characters"),
        ({"project_id": "other"}, 'project_id "other" is not the model\'s'),
        ({"model_id": "a/b"}, "'model_id' must be a non-empty string without '/'"),
        ({"columns": ["agee"]}, 'columns ["agee"] are not input or output columns'),
        ({"columns": ["churned"]}, "are not input or output columns of the model"),
        ({"columns": []}, 'columns must be "all" or a non-empty list of column names'),
        ({"columns": None}, "metric 'js_distance' is per column: columns must be"),
        ({"columns": ["age", "age"]}, "columns lists a column twice"),
        ({"metric": "events"}, "metric 'events' has one value per bin, not per column"),
        ({"warning": 0.3}, "warning (0.3) must be below critical (0.3) for direction greater"),
        ({"warning": 0.5}, "warning (0.5) must be below critical (0.3)"),
        (
            {"direction": "lesser", "warning": 0.1},
            "warning (0.1) must be above critical (0.3) for direction lesser",
        ),
        ({"direction": "up"}, 'direction must be one of greater, lesser; got "up"'),
        ({"critical": "0.3"}, 'critical must be a finite number; got "0.3"'),
        ({"critical": True}, "critical must be a finite number; got true"),
        ({"critical": float("inf")}, "critical must be a finite number"),
        ({"warning": "high"}, "warning must be a finite number"),
        ({"bin": "month"}, 'bin must be one of hour, day, week; got "month"'),
        ({"bin": ["hour"]}, "bin must be one of hour, day, week"),
        ({"evaluation_delay_hours": -1}, "evaluation_delay_hours must be a number of hours"),
        ({"evaluation_delay_hours": -0.5}, "evaluation_delay_hours must be a number of hours"),
        ({"evaluation_delay_hours": True}, "evaluation_delay_hours must be a number of hours"),
        ({"evaluation_delay_hours": 24 * 367}, "evaluation_delay_hours must be a number of hours"),
        ({"comparison": "absolute"}, 'comparison must be an object such as {"kind"'),
        ({"comparison": {"kind": "relative"}}, "comparison.kind must be one of absolute"),
        (
            {"comparison": {"kind": "relative_to_past"}},
            "comparison.bins_back must be one of 1, 24, 168 for hour bins; got null",
        ),
        (
            {"comparison": {"kind": "relative_to_past", "bins_back": 2}},
            "comparison.bins_back must be one of 1, 24, 168 for hour bins; got 2",
        ),
        (
            {"comparison": {"kind": "relative_to_past", "bins_back": 24}, "bin": "day"},
            "comparison.bins_back must be one of 1 for day bins; got 24",
        ),
        (
            {"comparison": {"kind": "absolute", "bins_back": 1}},
            "has fields its kind does not take: only relative_to_past takes bins_back",
        ),
        (
            {"comparison": {"kind": "relative_to_baseline"}},
            "metric 'js_distance' has no baseline value to compare with; relative_to_baseline "
            "takes missing_rate, type_mismatch_rate",
        ),
        ({"colour": "red"}, "unknown alert rule fields: colour; the fields are"),
        ({"channels": {"type": "slack"}}, "channels must be a list of channels"),
        ({"channels": ["https://x"]}, "channels[0] must be an object with type and url"),
        ({"channels": [{"type": "email", "url": "https://x"}]}, "channels[0].type must be one"),
        ({"channels": [{"type": "slack", "url": "ftp://x"}]}, "channels[0].url must be an http"),
        ({"channels": [{"type": "webhook", "url": "https://x"}]}, "channels[0].secret must be"),
        (
            {"channels": [{"type": "pagerduty", "url": "https://x", "routing_key": ""}]},
            "channels[0].routing_key must be a non-empty string",
        ),
        (
            {"channels": [{"type": "slack", "url": "https://x", "secret": "s"}]},
            "channels[0] has fields a slack channel does not take: secret",
        ),
    ],
)
def test_refused_with_the_field_and_what_to_change(changes: dict[str, Any], words: str) -> None:
    assert words in refused(raw_rule(**changes))


def test_refused_when_not_an_object() -> None:
    assert refused(["drift-age"]) == "an alert rule must be a JSON object of fields"


def test_missing_fields_are_named_together() -> None:
    message = refused(raw_rule(critical=..., direction=...))
    assert message == "an alert rule needs direction, critical"


def test_a_performance_metric_needs_targets() -> None:
    message = refused(raw_rule(metric="accuracy", columns=...), NO_TARGETS)
    assert "metric 'accuracy' measures performance, and the model has no target column" in message
    assert "add targets to the model's spec" in message


@pytest.mark.parametrize(
    ("spec", "metric", "offered"),
    [
        (REGRESSION, "auc", "mae, mse, rmse, mape, r2"),
        (BINARY, "r2", "accuracy, log_loss, precision, recall, f1, false_positive_rate, auc"),
        (MULTICLASS, "f1", "accuracy, log_loss, macro_f1, weighted_f1"),
    ],
)
def test_a_performance_metric_of_another_task(spec: ModelSpec, metric: str, offered: str) -> None:
    raw = raw_rule(model_id=spec.model_id, metric=metric, columns=...)
    message = refused(raw, spec)
    assert f"metric '{metric}' is not computed for {spec.task.value} models" in message
    assert message.endswith(f"their performance metrics are {offered}")


# --- the catalogue names exactly what bins emit ----------------------------------------


def _rich_bin(spec: ModelSpec, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``bin_metrics`` of a bin where every metric is defined."""
    baseline = profile_baseline(spec, rows)
    rules = ContributionRules(spec, baseline)
    counters: Counters = {}
    for i, row in enumerate(rows):
        add_into(counters, rules.of(StoredEvent(f"e{i}", 0, row, 5, i)))
    return bin_metrics(spec, baseline, counters)


RICH_BINS = {
    Task.BINARY_CLASSIFICATION: (
        BINARY,
        _rich_bin(
            BINARY,
            [
                {
                    "age": 20 + i,
                    "plan": "free" if i % 2 else "pro",
                    "score": i / 10,
                    "churned": int(i % 3 == 0),
                }
                for i in range(10)
            ],
        ),
    ),
    Task.MULTICLASS_CLASSIFICATION: (
        MULTICLASS,
        _rich_bin(
            MULTICLASS,
            [{"age": i, "p_a": i / 10, "p_b": 1 - i / 10, "tier": "ab"[i % 2]} for i in range(10)],
        ),
    ),
    Task.REGRESSION: (
        REGRESSION,
        _rich_bin(
            REGRESSION, [{"age": i, "price": i * 1.5, "paid": i * 2.0} for i in range(1, 11)]
        ),
    ),
}


@pytest.mark.parametrize("task", list(Task))
def test_catalogue_names_are_the_emitted_names(task: Task) -> None:
    spec, metrics = RICH_BINS[task]
    emitted = (
        {f"traffic.{key}" for key in metrics["traffic"]}
        | {f"performance.{key}" for key in metrics["performance"]}
        | {f"{section}.{key}" for section in ("integrity", "drift")
           for column in metrics[section].values() for key in column}
    )  # fmt: skip
    catalogued = {
        f"{definition.section}.{definition.key}"
        for definition in METRICS.values()
        if task in definition.tasks
    }
    assert catalogued == emitted
    assert set(metrics["integrity"]) == set(metrics["drift"]) == set(monitored_columns(spec))


def test_rates_are_catalogued_beside_their_counts() -> None:
    rates = {name for name, definition in METRICS.items() if definition.over_events}
    assert rates == {"labelled_share", "missing_rate", "type_mismatch_rate", "range_violation_rate"}


def test_the_readme_rule_is_a_valid_rule_of_the_churn_model() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Alerts\n", 1)[1]
    example = section.split("```json\n", 1)[1].split("```", 1)[0]
    rule = AlertRule.from_dict(orjson.loads(example), CHURN_MODEL)
    assert [channel.type.value for channel in rule.channels] == ["webhook", "slack", "pagerduty"]
