"""Alert rules (SPEC §3 "Alerts"): what to watch, how to compare it, when to warn.

A rule names one metric of the catalogue (``METRICS``), the columns it applies to (for a
per-column metric), a comparison, a direction, a critical and an optional warning
threshold, a bin size, an evaluation delay and the channels to notify. It is validated
once, against the model's spec, when it is created (``AlertRule.from_dict``): every error
names the field and says what to change, so that the REST API can answer 400 with it.

Comparisons. ``absolute`` compares the metric's value itself. The relative ones compare
``(value - reference) / |reference|``, the change as a fraction of the reference (0.5 is
"half as much again", -0.5 "half of it"): ``relative_to_past`` takes as reference the
same metric ``bins_back`` bins earlier (1, 24 or 168 hour bins; 1 day or week bin),
``relative_to_baseline`` the metric's value in the baseline (only metrics that have one:
the integrity rates). A missing or zero reference leaves the rule not evaluable for that
bin (``state.alert_evaluation``).

Directions. ``greater`` breaches when the compared value is above a threshold, ``lesser``
when it is below; so a warning comes before critical: below it for ``greater``, above it
for ``lesser``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

from driftline.state.baseline import ColumnProfile
from driftline.state.names import model_key, name_problem
from driftline.state.periods import Period
from driftline.state.spec import ModelSpec, Task
from driftline.state.wording import E, enum_member, shown

RULE_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
ALL_COLUMNS: Final = "all"
# What a rule watches: None (a model-level metric), "all" monitored columns, or a list.
Columns = Literal["all"] | tuple[str, ...] | None
# The longest evaluation delay: a year (labels later than that are not waited for).
MAX_DELAY_HOURS = 24 * 366
# Look-backs a relative_to_past rule may take, per bin size: an hour, a day, a week back.
LOOK_BACKS = {Period.HOUR: (1, 24, 168), Period.DAY: (1,), Period.WEEK: (1,)}


def rule_key(project_id: str, model_id: str, rule_id: str) -> str:
    """A rule's key from its names (``AlertRule.key``; also for a rule not read yet)."""
    return f"{model_key(project_id, model_id)}/{rule_id}"


class InvalidAlertRuleError(ValueError):
    """An alert rule that cannot be accepted; the message says what to change."""


class Level(StrEnum):
    """Whether a metric has one value per bin or one per column."""

    MODEL = "model"
    COLUMN = "column"


class Direction(StrEnum):
    GREATER = "greater"
    LESSER = "lesser"


class ComparisonKind(StrEnum):
    ABSOLUTE = "absolute"
    RELATIVE_TO_PAST = "relative_to_past"
    RELATIVE_TO_BASELINE = "relative_to_baseline"


class ChannelType(StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"
    PAGERDUTY = "pagerduty"


ALL_TASKS = frozenset(Task)
_BINARY = frozenset({Task.BINARY_CLASSIFICATION})
_MULTICLASS = frozenset({Task.MULTICLASS_CLASSIFICATION})
_CLASSIFICATION = _BINARY | _MULTICLASS
_REGRESSION = frozenset({Task.REGRESSION})


COLUMN_SLOT = "<column>"


@dataclass(frozen=True, slots=True)
class MetricDefinition:
    """One metric a rule can watch, and where an emitted bin's ``metrics`` holds it.

    ``where`` is the path in the bin's ``metrics`` document, ``<column>`` standing for the
    column of a per-column metric: ``integrity.<column>.missing``. ``over_events`` divides
    the value there by the bin's events (a rate, or a share). ``baseline`` gives the
    metric's value in a column's baseline profile, for the metrics that have one.
    """

    name: str
    where: str
    over_events: bool = False
    tasks: frozenset[Task] = ALL_TASKS
    baseline: Callable[[ColumnProfile], float | None] | None = None

    @property
    def level(self) -> Level:
        return Level.COLUMN if COLUMN_SLOT in self.where else Level.MODEL

    @property
    def section(self) -> str:
        """The part of ``metrics`` that holds it: traffic, integrity, drift, performance."""
        return self.where.split(".")[0]

    @property
    def key(self) -> str:
        """Its name in the section (or in the column's part of it)."""
        return self.where.rsplit(".", 1)[1]

    @property
    def performance(self) -> bool:
        return self.section == "performance"


def _baseline_rate(
    count: Callable[[ColumnProfile], int],
) -> Callable[[ColumnProfile], float | None]:
    """A rate over the baseline column's rows; None for a profile without rows."""
    return lambda profile: count(profile) / profile.rows if profile.rows else None


_M = MetricDefinition
_NULLS = _baseline_rate(lambda profile: profile.nulls)
_MISMATCHES = _baseline_rate(lambda profile: profile.mismatches)
# Range violations have no baseline rate: the baseline's values define the range.
_CATALOGUE = (
    # name                    where in an emitted bin's metrics      rate of events, tasks
    _M("events",               "traffic.events"),
    _M("labelled",             "traffic.labelled"),
    _M("labelled_share",       "traffic.labelled",                   True),
    _M("mean_ingest_delay_ms", "traffic.mean_ingest_delay_ms"),
    _M("missing",              "integrity.<column>.missing"),
    _M("missing_rate",         "integrity.<column>.missing",         True, baseline=_NULLS),
    _M("type_mismatch",        "integrity.<column>.type_mismatch"),
    _M("type_mismatch_rate",   "integrity.<column>.type_mismatch",   True, baseline=_MISMATCHES),
    _M("range_violation",      "integrity.<column>.range_violation"),
    _M("range_violation_rate", "integrity.<column>.range_violation", True),
    _M("js_distance",          "drift.<column>.js_distance"),
    _M("psi",                  "drift.<column>.psi"),
    _M("accuracy",             "performance.accuracy",               tasks=_CLASSIFICATION),
    _M("log_loss",             "performance.log_loss",               tasks=_CLASSIFICATION),
    _M("precision",            "performance.precision",              tasks=_BINARY),
    _M("recall",               "performance.recall",                 tasks=_BINARY),
    _M("f1",                   "performance.f1",                     tasks=_BINARY),
    _M("false_positive_rate",  "performance.false_positive_rate",    tasks=_BINARY),
    _M("auc",                  "performance.auc",                    tasks=_BINARY),
    _M("macro_f1",             "performance.macro_f1",               tasks=_MULTICLASS),
    _M("weighted_f1",          "performance.weighted_f1",            tasks=_MULTICLASS),
    _M("mae",                  "performance.mae",                    tasks=_REGRESSION),
    _M("mse",                  "performance.mse",                    tasks=_REGRESSION),
    _M("rmse",                 "performance.rmse",                   tasks=_REGRESSION),
    _M("mape",                 "performance.mape",                   tasks=_REGRESSION),
    _M("r2",                   "performance.r2",                     tasks=_REGRESSION),
)  # fmt: skip
# The metric catalogue: every metric a rule may name, by name.
METRICS: Mapping[str, MetricDefinition] = {metric.name: metric for metric in _CATALOGUE}


def monitored_columns(spec: ModelSpec) -> tuple[str, ...]:
    """The columns per-column metrics exist for (integrity and drift): inputs and outputs."""
    return (*spec.inputs, *spec.outputs)


@dataclass(frozen=True, slots=True)
class Comparison:
    kind: ComparisonKind
    # Only for relative_to_past: how many bins of the rule's size to look back.
    bins_back: int | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.kind is ComparisonKind.RELATIVE_TO_PAST:
            return {"kind": self.kind.value, "bins_back": self.bins_back}
        return {"kind": self.kind.value}


@dataclass(frozen=True, slots=True)
class Channel:
    """Where a state change is sent: an HTTP endpoint, with what its payload needs."""

    type: ChannelType
    url: str
    # webhook: the HMAC key of the signature header.
    secret: str | None = None
    # pagerduty: the Events v2 integration key.
    routing_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"type": self.type.value, "url": self.url}
        extra = _CHANNEL_FIELDS[self.type]
        raw.update({name: getattr(self, name) for name in extra})
        return raw


# Each channel type's required fields besides type and url.
_CHANNEL_FIELDS: Mapping[ChannelType, tuple[str, ...]] = {
    ChannelType.WEBHOOK: ("secret",),
    ChannelType.SLACK: (),
    ChannelType.PAGERDUTY: ("routing_key",),
}


@dataclass(frozen=True, slots=True)
class AlertRule:
    rule_id: str
    project_id: str
    model_id: str
    metric: str
    columns: Columns
    comparison: Comparison
    direction: Direction
    critical: float
    warning: float | None
    bin: Period
    evaluation_delay_hours: float = 0
    channels: tuple[Channel, ...] = ()

    @property
    def key(self) -> str:
        """``project_id/model_id/rule_id``: the rule's key in its topic and in the API."""
        return rule_key(self.project_id, self.model_id, self.rule_id)

    @property
    def definition(self) -> MetricDefinition:
        return METRICS[self.metric]

    def applies_to(self, spec: ModelSpec) -> tuple[str | None, ...]:
        """The columns to evaluate: ``(None,)`` for a model-level metric; "all" is read
        against the spec as it is now."""
        if self.columns is None:
            return (None,)
        if self.columns == ALL_COLUMNS:
            return monitored_columns(spec)
        return tuple(self.columns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "project_id": self.project_id,
            "model_id": self.model_id,
            "metric": self.metric,
            "columns": self.columns if not isinstance(self.columns, tuple) else list(self.columns),
            "comparison": self.comparison.to_dict(),
            "direction": self.direction.value,
            "critical": self.critical,
            "warning": self.warning,
            "bin": self.bin.value,
            "evaluation_delay_hours": self.evaluation_delay_hours,
            "channels": [channel.to_dict() for channel in self.channels],
        }

    @classmethod
    def from_dict(cls, raw: Any, spec: ModelSpec) -> AlertRule:
        """The rule ``raw`` describes for the model ``spec``, or InvalidAlertRuleError."""
        if not isinstance(raw, Mapping):
            raise InvalidAlertRuleError("an alert rule must be a JSON object of fields")
        _check_fields(raw)
        metric = _metric(raw.get("metric"), spec)
        period = _enum(Period, raw.get("bin"), "bin")
        direction = _enum(Direction, raw.get("direction"), "direction")
        critical = _number(raw.get("critical"), "critical")
        warning = _optional_number(raw.get("warning"), "warning")
        _check_order(direction, critical, warning)
        return cls(
            rule_id=checked_rule_id(raw.get("rule_id")),
            project_id=_model_name(raw, "project_id", spec.project_id),
            model_id=_model_name(raw, "model_id", spec.model_id),
            metric=metric.name,
            columns=_columns(raw.get("columns"), metric, spec),
            comparison=_comparison(raw.get("comparison"), metric, period),
            direction=direction,
            critical=critical,
            warning=warning,
            bin=period,
            evaluation_delay_hours=_delay(raw.get("evaluation_delay_hours", 0)),
            channels=_channels(raw.get("channels")),
        )


_FIELDS = frozenset(AlertRule.__dataclass_fields__)
_REQUIRED = ("rule_id", "project_id", "model_id", "metric", "comparison", "direction",
             "critical", "bin")  # fmt: skip


def _check_fields(raw: Mapping[Any, Any]) -> None:
    unknown = sorted(str(name) for name in raw if name not in _FIELDS)
    if unknown:
        raise InvalidAlertRuleError(
            f"unknown alert rule fields: {', '.join(unknown)}; the fields are "
            f"{', '.join(sorted(_FIELDS))}"
        )
    missing = [name for name in _REQUIRED if raw.get(name) is None]
    if missing:
        raise InvalidAlertRuleError(f"an alert rule needs {', '.join(missing)}")


def checked_rule_id(value: Any) -> str:
    """``value`` if it is a rule id as rules have them; ``InvalidAlertRuleError`` if not."""
    if isinstance(value, str) and RULE_ID_PATTERN.fullmatch(value):
        return value
    raise InvalidAlertRuleError(
        "rule_id must be 1 to 64 characters of letters, digits, '_', '.' or '-'; "
        f"got {shown(value)}"
    )


def _model_name(raw: Mapping[str, Any], field_name: str, expected: str) -> str:
    value = raw.get(field_name)
    problem = name_problem(value, field_name)
    if problem is not None:
        raise InvalidAlertRuleError(problem)
    if value != expected:
        raise InvalidAlertRuleError(
            f"{field_name} {shown(value)} is not the model's: the rule is for {shown(expected)}"
        )
    return expected


def _metric(value: Any, spec: ModelSpec) -> MetricDefinition:
    metric = METRICS.get(value) if isinstance(value, str) else None
    if metric is None:
        raise InvalidAlertRuleError(
            f"metric {shown(value)} is unknown; use one of {', '.join(METRICS)}"
        )
    if metric.performance and not spec.targets:
        raise InvalidAlertRuleError(
            f"metric '{metric.name}' measures performance, and the model has no target "
            "column: add targets to the model's spec, or watch another metric"
        )
    if spec.task not in metric.tasks:
        offered = ", ".join(
            name for name, m in METRICS.items() if m.performance and spec.task in m.tasks
        )
        raise InvalidAlertRuleError(
            f"metric '{metric.name}' is not computed for {spec.task.value} models; "
            f"their performance metrics are {offered}"
        )
    return metric


def _columns(value: Any, metric: MetricDefinition, spec: ModelSpec) -> Columns:
    if metric.level is Level.MODEL:
        if value is not None:
            raise InvalidAlertRuleError(
                f"metric '{metric.name}' has one value per bin, not per column: "
                "leave columns out (or null)"
            )
        return None
    if value == ALL_COLUMNS:
        return ALL_COLUMNS
    known = monitored_columns(spec)
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(c, str) for c in value)
    ):
        raise InvalidAlertRuleError(
            f"metric '{metric.name}' is per column: columns must be \"all\" or a non-empty "
            f"list of column names; got {shown(value)}"
        )
    unknown = [name for name in value if name not in known]
    if unknown:
        raise InvalidAlertRuleError(
            f"columns {shown(unknown)} are not input or output columns of the model; "
            f'use "all" or some of {", ".join(known)}'
        )
    if len(set(value)) != len(value):
        raise InvalidAlertRuleError(f"columns lists a column twice: {shown(list(value))}")
    return tuple(value)


def _comparison(value: Any, metric: MetricDefinition, period: Period) -> Comparison:
    if not isinstance(value, Mapping):
        raise InvalidAlertRuleError(
            f'comparison must be an object such as {{"kind": "absolute"}}; got {shown(value)}'
        )
    kind = _enum(ComparisonKind, value.get("kind"), "comparison.kind")
    extra = sorted(str(name) for name in value if name not in ("kind", "bins_back"))
    if extra or ("bins_back" in value and kind is not ComparisonKind.RELATIVE_TO_PAST):
        raise InvalidAlertRuleError(
            f"comparison {shown(dict(value))} has fields its kind does not take: "
            "only relative_to_past takes bins_back"
        )
    if kind is ComparisonKind.RELATIVE_TO_PAST:
        return Comparison(kind, _bins_back(value.get("bins_back"), period))
    if kind is ComparisonKind.RELATIVE_TO_BASELINE and metric.baseline is None:
        with_baseline = ", ".join(name for name, m in METRICS.items() if m.baseline is not None)
        raise InvalidAlertRuleError(
            f"metric '{metric.name}' has no baseline value to compare with; "
            f"relative_to_baseline takes {with_baseline}"
        )
    return Comparison(kind)


def _bins_back(value: Any, period: Period) -> int:
    allowed = LOOK_BACKS[period]
    if isinstance(value, int) and not isinstance(value, bool) and value in allowed:
        return value
    raise InvalidAlertRuleError(
        f"comparison.bins_back must be one of {', '.join(map(str, allowed))} for "
        f"{period.value} bins; got {shown(value)}"
    )


def _number(value: Any, field_name: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise InvalidAlertRuleError(f"{field_name} must be a finite number; got {shown(value)}")


def _optional_number(value: Any, field_name: str) -> float | None:
    return None if value is None else _number(value, field_name)


def _check_order(direction: Direction, critical: float, warning: float | None) -> None:
    """A warning must be reached before critical: the rule escalates, never skips back."""
    if warning is None:
        return
    if direction is Direction.GREATER and not warning < critical:
        raise InvalidAlertRuleError(
            f"warning ({warning:g}) must be below critical ({critical:g}) for direction "
            "greater: lower the warning, or leave it out"
        )
    if direction is Direction.LESSER and not warning > critical:
        raise InvalidAlertRuleError(
            f"warning ({warning:g}) must be above critical ({critical:g}) for direction "
            "lesser: raise the warning, or leave it out"
        )


def _delay(value: Any) -> float:
    """Hours, 0 or more; a fraction of an hour is taken too (90 minutes is 1.5)."""
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= MAX_DELAY_HOURS
    ):
        return value
    raise InvalidAlertRuleError(
        f"evaluation_delay_hours must be a number of hours from 0 to {MAX_DELAY_HOURS:,} "
        f"(a fraction is taken); got {shown(value)}"
    )


def record_channels(record: Mapping[str, Any]) -> tuple[Channel, ...]:
    """The channels of a rule record as ``AlertRule.to_dict`` wrote it (the rules topic
    holds records: reading the whole rule back would need its model's spec);
    InvalidAlertRuleError for channels no rule could have had."""
    return _channels(record.get("channels"))


def _channels(value: Any) -> tuple[Channel, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise InvalidAlertRuleError(f"channels must be a list of channels; got {shown(value)}")
    return tuple(_channel(raw, f"channels[{index}]") for index, raw in enumerate(value))


def _channel(raw: Any, where: str) -> Channel:
    if not isinstance(raw, Mapping):
        raise InvalidAlertRuleError(f"{where} must be an object with type and url")
    kind = _enum(ChannelType, raw.get("type"), f"{where}.type")
    required = _CHANNEL_FIELDS[kind]
    extra = sorted(str(name) for name in raw if name not in ("type", "url", *required))
    if extra:
        raise InvalidAlertRuleError(
            f"{where} has fields a {kind.value} channel does not take: {', '.join(extra)}"
        )
    url = raw.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidAlertRuleError(
            f"{where}.url must be an http:// or https:// URL; got {shown(url)}"
        )
    values = {name: _secret_text(raw.get(name), f"{where}.{name}") for name in required}
    return Channel(kind, url, **values)


def _secret_text(value: Any, where: str) -> str:
    if isinstance(value, str) and value:
        return value
    got = "it is missing" if value is None else "got a value that is not text or is empty"
    raise InvalidAlertRuleError(f"{where} must be a non-empty string; {got}")


def _enum(kind: type[E], value: Any, what: str) -> E:
    return enum_member(kind, value, what, InvalidAlertRuleError)
