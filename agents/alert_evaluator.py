"""The alert evaluator: every changed bin, evaluated against its model's alert rules.

Input: ``<prefix>.model-bins`` (every emission of an hour bin, keyed by model, so all of a
model's hours are in one partition's store). For each batch the processor keeps the
hours' counters, asks ``state.alerting`` which periods of which rules to evaluate again
and what changed, keeps each alert's record, and publishes every changed alert, whole, to
the compacted alerts topic. The runtime commits the table writes, the alerts and the
input position in one Kafka transaction, so each change of state is published exactly
once, whatever crashes happen. A period that cannot be judged yet (not ended, or its
rule's evaluation delay not over) is kept in the due table; a tick evaluates it when it
comes due, so a performance alert fires once its late labels had their time.

Why the batch engine and not a Faust agent with a Table, though the input is a few
messages a second: under SIGKILL, Faust's ``exactly_once`` applied inputs twice in every
run (``benchmarks/faust_exactly_once.py``: 524 of 5,000 inputs applied twice over 7 kills,
its outputs written outside the transaction, faust-streaming issues #177 and #517), while
the engine applied each once over 8 kills. An alert change published twice would notify
twice under two change ids; the engine publishes it with the state that records it.

Rules come from the compacted rules topic (``topics.alert_rules``), caught up once per
batch; a rule that no longer fits its model's spec (a column removed) is skipped. When a
rule is deleted, a tick resolves its open alerts (kept in an index of their own). A rule
judges the bins emitted after it was created; a replaced rule judges with its new
thresholds from the next emission of a bin on.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from confluent_kafka import Message

from driftline.agents.runtime import Outgoing, dead_letter_to
from driftline.state.alert_rules import AlertRule, InvalidAlertRuleError
from driftline.state.alerting import Outcome, period_metrics, periods_touched, reevaluate
from driftline.state.alerts import Alert, alert_key, withdrawn
from driftline.state.bins import Counters
from driftline.state.names import split_model_key
from driftline.state.partition_tables import (
    ALERTS,
    DUE,
    HOUR_COUNTERS,
    OPEN_ALERTS,
    PERIOD_COUNTERS,
)
from driftline.state.periods import SUMMED_PERIODS, Period, period_start_hour, with_hour_replaced
from driftline.state.registered import RegisteredModel
from driftline.state.tables import TEXT, PartitionTransaction, Table
from driftline.topics.alerts import ALERT
from driftline.topics.dead_letters import DeadLetter
from driftline.topics.model_bins import MODEL_BIN

log = logging.getLogger(__name__)

K = TypeVar("K")
# Which period starts of a rule to evaluate.
StartsOf = Callable[[AlertRule], Iterable[int]]


class RuleRecords(Protocol):
    """The rules topic as the evaluator reads it (``topics.alert_rules.AlertRules``)."""

    def catch_up(self, timeout_s: float = 10.0) -> None: ...

    def of_model(
        self, project_id: str, model_id: str, fresh: bool = True
    ) -> list[dict[str, Any]]: ...

    def get(self, key: str, fresh: bool = True) -> dict[str, Any] | None: ...


class AlertEvaluator:
    """The alerts runner's processor; one per worker, for the partitions it holds."""

    def __init__(
        self,
        registered_model: Callable[[str], RegisteredModel | None],
        rules: RuleRecords,
        alerts_topic: str,
        dead_letter_topic: str,
    ) -> None:
        self._registered_model = registered_model
        self._rules = ParsedRules(rules)
        self._alerts_topic = alerts_topic
        self._dead_letter_topic = dead_letter_topic

    def handle(
        self, partition: int, messages: Sequence[Message], tx: PartitionTransaction, now_ms: int
    ) -> list[Outgoing]:
        """Keep the hours' counters, then evaluate what they touched, model by model."""
        touched: dict[str, set[int]] = defaultdict(set)
        for message in messages:
            raw_key, value = message.key(), message.value()
            if raw_key is None or value is None:
                continue
            model, record = TEXT.decode(raw_key), MODEL_BIN.decode(value)
            counters = {} if record.value is None else dict(record.value.get("counts") or {})
            _keep_hour(model, record.hour, counters, tx)
            touched[model].add(record.hour)
        if not touched:
            return []
        self._rules.catch_up()
        outgoing: list[Outgoing] = []
        for model, hours in touched.items():
            starts = _touched_by(hours)
            outgoing += self._evaluated(model, starts, tx, now_ms)
        return outgoing

    def tick(self, partition: int, tx: PartitionTransaction, now_ms: int) -> list[Outgoing]:
        """Evaluate the periods that came due; resolve the open alerts of deleted rules."""
        due: dict[str, dict[Period, set[int]]] = defaultdict(lambda: defaultdict(set))
        for key, _ in list(tx.items(DUE)):
            due_ms, model, period, start = key
            if due_ms > now_ms:
                break
            tx.delete(DUE, key)
            due[model][period].add(start)
        open_keys = [key for key, _ in tx.items(OPEN_ALERTS)]
        if not due and not open_keys:
            return []
        self._rules.catch_up()
        outgoing = self._withdrawn(open_keys, tx, now_ms)
        for model, periods in due.items():
            outgoing += self._evaluated(model, _due_in(periods), tx, now_ms)
        return outgoing

    def dead_letter(
        self, partition: int, message: Message, reason: str, tx: PartitionTransaction
    ) -> list[Outgoing]:
        return [dead_letter_to(self._dead_letter_topic, DeadLetter.of(message, reason))]

    def _evaluated(
        self, model: str, starts_of: StartsOf, tx: PartitionTransaction, now_ms: int
    ) -> list[Outgoing]:
        """Evaluate the model's rules on the periods ``starts_of`` names; keep and publish
        the alerts that changed, keep the periods not due yet."""
        registered = self._registered_model(model)
        if registered is None:
            return []
        metrics = PeriodMetrics(model, registered, tx)
        outcome = Outcome()
        for rule in self._rules.of_model(model, registered):
            columns = rule.applies_to(registered.spec)
            for start in starts_of(rule):
                if not outcome.judgeable(rule, start, now_ms):
                    continue
                keys = [alert_key(rule, column, start) for column in columns]
                found = tx.get_many(ALERTS, keys)
                previous = {key: alert for key, alert in zip(keys, found, strict=True) if alert}
                reevaluate(rule, registered, start, metrics.of(rule.bin), previous, now_ms, outcome)
        for (period, start), due_ms in outcome.due.items():
            tx.set(DUE, (due_ms, model, period, start), b"")
        return [self._published(alert, tx) for alert in outcome.changed]

    def _withdrawn(
        self, open_keys: list[str], tx: PartitionTransaction, now_ms: int
    ) -> list[Outgoing]:
        """Resolve the open alerts whose rule is gone (deleted through the API)."""
        outgoing = []
        for alert in tx.get_many(ALERTS, open_keys):
            if alert is not None and not self._rules.exists(alert.rule_key):
                outgoing.append(self._published(withdrawn(alert, now_ms), tx))
        return outgoing

    def _published(self, alert: Alert, tx: PartitionTransaction) -> Outgoing:
        """Keep the alert as changed, index it while open, and publish it."""
        tx.set(ALERTS, alert.key, alert)
        if alert.open:
            tx.set(OPEN_ALERTS, alert.key, b"")
        else:
            tx.delete(OPEN_ALERTS, alert.key)
        return Outgoing(self._alerts_topic, TEXT.encode(alert.key), ALERT.encode(alert))


def _keep_hour(model: str, hour: int, counters: Counters, tx: PartitionTransaction) -> None:
    """The hour's counters, and the day and week holding it moved by its change."""
    before = tx.get(HOUR_COUNTERS, (model, hour)) or {}
    _put(tx, HOUR_COUNTERS, (model, hour), counters)
    for period in SUMMED_PERIODS:
        key = (model, period, period_start_hour(hour, period))
        total = tx.get(PERIOD_COUNTERS, key) or {}
        _put(tx, PERIOD_COUNTERS, key, with_hour_replaced(total, before, counters))


def _put(tx: PartitionTransaction, table: Table[K, Counters], key: K, counters: Counters) -> None:
    """Counters kept, or their entry dropped once they are all zero."""
    if counters:
        tx.set(table, key, counters)
    else:
        tx.delete(table, key)


def _touched_by(hours: set[int]) -> StartsOf:
    def starts(rule: AlertRule) -> set[int]:
        return {start for hour in hours for start in periods_touched(rule, hour)}

    return starts


def _due_in(periods: Mapping[Period, set[int]]) -> StartsOf:
    def starts(rule: AlertRule) -> Iterable[int]:
        return periods.get(rule.bin, ())

    return starts


class PeriodMetrics:
    """A model's period metrics within one batch, each computed once however many rules
    read it."""

    def __init__(self, model: str, registered: RegisteredModel, tx: PartitionTransaction) -> None:
        self._model = model
        self._registered = registered
        self._tx = tx
        self._cache: dict[tuple[Period, int], Mapping[str, Any] | None] = {}

    def of(self, period: Period) -> Callable[[int], Mapping[str, Any] | None]:
        def metrics(start: int) -> Mapping[str, Any] | None:
            key = (period, start)
            if key not in self._cache:
                self._cache[key] = period_metrics(self._registered, self._counters(period, start))
            return self._cache[key]

        return metrics

    def _counters(self, period: Period, start: int) -> Counters | None:
        if period is Period.HOUR:
            return self._tx.get(HOUR_COUNTERS, (self._model, start))
        return self._tx.get(PERIOD_COUNTERS, (self._model, period, start))


class ParsedRules:
    """The rules topic's records read into ``AlertRule``s against their model's spec, each
    parsed once per record and spec."""

    def __init__(self, records: RuleRecords) -> None:
        self._records = records
        self._parsed: dict[str, tuple[dict[str, Any], RegisteredModel, AlertRule | None]] = {}

    def catch_up(self) -> None:
        self._records.catch_up()

    def exists(self, rule_key: str) -> bool:
        """Whether the rule is in the topic, as last caught up."""
        return self._records.get(rule_key, fresh=False) is not None

    def of_model(self, model: str, registered: RegisteredModel) -> list[AlertRule]:
        project_id, model_id = split_model_key(model)
        rules = []
        for record in self._records.of_model(project_id, model_id, fresh=False):
            rule = self._parsed_rule(record, registered)
            if rule is not None:
                rules.append(rule)
        return rules

    def _parsed_rule(self, record: dict[str, Any], registered: RegisteredModel) -> AlertRule | None:
        key = f"{record['project_id']}/{record['model_id']}/{record['rule_id']}"
        known = self._parsed.get(key)
        if known is not None and known[0] is record and known[1] is registered:
            return known[2]
        try:
            rule: AlertRule | None = AlertRule.from_dict(record, registered.spec)
        except InvalidAlertRuleError as error:
            log.warning("alert rule %s is skipped: it no longer fits its model: %s", key, error)
            rule = None
        self._parsed[key] = (record, registered, rule)
        return rule
