"""Alerts as they are kept and published: one record per (rule, column, bin), holding its
current state and the history of its changes (SPEC §3 "Alerts").

The evaluator (``agents/alert_evaluator.py``) keeps each alert's record in its table and
publishes it, whole, to the compacted alerts topic every time it changes. So the topic's
newest record per key is the alert's current state, and its ``changes`` are the history:
compaction keeps both. The last change of a record is the one its publication announces;
``change_id`` names that change for ever (the notifier's idempotency key), so a receiver
that sees it twice (a notification retried, a worker killed between publication and
delivery) can drop the repeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from driftline.state.alert_evaluation import AlertState, Change, Severity
from driftline.state.alert_rules import AlertRule, rule_key
from driftline.state.bins import HOUR_MS
from driftline.state.periods import Period, period_end_ms
from driftline.state.tables import Codec

# A record keeps its last changes; an alert changes a few times (fired, escalated,
# resolved by late labels), so this bound is only met by a bin that flaps for days.
HISTORY_KEPT = 100


def alert_key(rule: AlertRule, column: str | None, bin_start_hour: int) -> str:
    """The key of ``rule``'s alert on ``column`` in the bin at ``bin_start_hour``."""
    return _key(rule.key, rule.bin, bin_start_hour, column)


def _key(rule: str, period: Period, bin_start_hour: int, column: str | None) -> str:
    """``project/model/rule_id/<bin>/<start hour>/<column>``: the column last, since a
    column name may hold any character; empty for a model-level metric."""
    return f"{rule}/{period.value}/{bin_start_hour}/{column or ''}"


@dataclass(frozen=True, slots=True)
class AlertChange:
    """One change of an alert's state, numbered from 1 within the alert."""

    seq: int
    change: Change
    severity: Severity
    value: float
    threshold: float
    reference: float | None
    at_ms: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "change": self.change.value,
            "severity": self.severity.value,
            "value": self.value,
            "threshold": self.threshold,
            "reference": self.reference,
            "at_ms": self.at_ms,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AlertChange:
        reference = raw.get("reference")
        return cls(
            seq=int(raw["seq"]),
            change=Change(raw["change"]),
            severity=Severity(raw["severity"]),
            value=float(raw["value"]),
            threshold=float(raw["threshold"]),
            reference=None if reference is None else float(reference),
            at_ms=int(raw["at_ms"]),
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert's current state and its history (oldest change first)."""

    project_id: str
    model_id: str
    rule_id: str
    metric: str
    column: str | None
    bin: Period
    bin_start_hour: int
    severity: Severity
    value: float
    threshold: float
    reference: float | None
    changes: tuple[AlertChange, ...]

    @property
    def key(self) -> str:
        return _key(self.rule_key, self.bin, self.bin_start_hour, self.column)

    @property
    def rule_key(self) -> str:
        return rule_key(self.project_id, self.model_id, self.rule_id)

    @property
    def open(self) -> bool:
        """Firing (warning or critical): not resolved."""
        return self.severity is not Severity.OK

    @property
    def last_change(self) -> AlertChange:
        return self.changes[-1]

    @property
    def change_id(self) -> str:
        """The last change's id, unique for ever: ``<alert key>#<seq>``."""
        return f"{self.key}#{self.last_change.seq}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "project_id": self.project_id,
            "model_id": self.model_id,
            "rule_id": self.rule_id,
            "metric": self.metric,
            "column": self.column,
            "bin": self.bin.value,
            "bin_start_ms": self.bin_start_hour * HOUR_MS,
            "bin_end_ms": period_end_ms(self.bin_start_hour, self.bin),
            "severity": self.severity.value,
            "open": self.open,
            "value": self.value,
            "threshold": self.threshold,
            "reference": self.reference,
            "changes": [change.to_dict() for change in self.changes],
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Alert:
        """An alert as ``to_dict`` wrote it; KeyError/ValueError/TypeError otherwise."""
        reference = raw.get("reference")
        return cls(
            project_id=str(raw["project_id"]),
            model_id=str(raw["model_id"]),
            rule_id=str(raw["rule_id"]),
            metric=str(raw["metric"]),
            column=raw["column"],
            bin=Period(raw["bin"]),
            bin_start_hour=int(raw["bin_start_ms"]) // HOUR_MS,
            severity=Severity(raw["severity"]),
            value=float(raw["value"]),
            threshold=float(raw["threshold"]),
            reference=None if reference is None else float(reference),
            changes=tuple(AlertChange.from_dict(change) for change in raw["changes"]),
        )


def _encoded(alert: Alert) -> bytes:
    return orjson.dumps(alert.to_dict())


def _decoded(raw: bytes) -> Alert:
    """An alert; ``ValueError`` for bytes that are not one (orjson's error is one)."""
    try:
        return Alert.from_dict(orjson.loads(raw))
    except (KeyError, TypeError) as error:
        raise ValueError(f"not an alert record: {error}") from None


# An alert as JSON bytes: the alerts topic's value and the evaluator's table of alerts.
ALERT_RECORD: Codec[Alert] = Codec(_encoded, _decoded)


def changed(
    previous: Alert | None,
    rule: AlertRule,
    column: str | None,
    bin_start_hour: int,
    change: Change,
    state: AlertState,
    at_ms: int,
) -> Alert:
    """The alert after ``change`` to ``state`` (``previous`` None: its first change)."""
    if previous is not None:
        return _appended(previous, change, state, at_ms)
    return Alert(
        project_id=rule.project_id,
        model_id=rule.model_id,
        rule_id=rule.rule_id,
        metric=rule.metric,
        column=column,
        bin=rule.bin,
        bin_start_hour=bin_start_hour,
        severity=state.severity,
        value=state.value,
        threshold=state.threshold,
        reference=state.reference,
        changes=(AlertChange(1, change, state.severity, state.value, state.threshold,
                             state.reference, at_ms),),
    )  # fmt: skip


def withdrawn(alert: Alert, at_ms: int) -> Alert:
    """An open alert resolved because its rule was deleted: nothing is left to breach.
    Value, threshold and reference stay the last ones judged."""
    state = AlertState(Severity.OK, alert.value, alert.threshold, alert.reference)
    return _appended(alert, Change.RESOLVED, state, at_ms)


def _appended(alert: Alert, change: Change, state: AlertState, at_ms: int) -> Alert:
    entry = AlertChange(alert.last_change.seq + 1, change, state.severity, state.value,
                        state.threshold, state.reference, at_ms)  # fmt: skip
    return replace(
        alert,
        severity=state.severity,
        value=state.value,
        threshold=state.threshold,
        reference=state.reference,
        changes=(*alert.changes, entry)[-HISTORY_KEPT:],
    )
