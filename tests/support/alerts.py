"""The alerts topic as a test reads it (every record the evaluator committed), and alert
records of the churn model built as the evaluator builds them (``state.alerts.changed``):
the listing's tests make their own instead of waiting for an evaluator."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition

from driftline.settings import Settings
from driftline.state.alert_evaluation import AlertState, Severity, transition
from driftline.state.alert_rules import AlertRule
from driftline.state.alerts import Alert, changed
from driftline.state.bins import HOUR_MS
from driftline.state.periods import Period, period_end_ms, period_start_hour
from driftline.topics.alerts import ALERT
from driftline.topics.catalog import Topics
from driftline.topics.clients import consumer_config
from driftline.topics.offsets import watermarks
from tests.support.alert_rules import drift_rule
from tests.support.models import CHURN_MODEL, HOUR0

_HOUR0_HOURS = HOUR0 // HOUR_MS
# The PSI each severity is published with, against drift_rule's thresholds (warning
# 0.1, critical 0.25); ok names the threshold it would breach first.
_STATES = {
    Severity.OK: AlertState(Severity.OK, 0.05, 0.1, None),
    Severity.WARNING: AlertState(Severity.WARNING, 0.15, 0.1, None),
    Severity.CRITICAL: AlertState(Severity.CRITICAL, 0.4, 0.25, None),
}


def churn_alert(
    *severities: Severity,
    rule_id: str = "drift-age",
    column: str = "age",
    period: Period = Period.HOUR,
    hours_after: int = 0,
) -> Alert:
    """The alert of ``drift_rule(rule_id)`` on ``column``, for the ``period`` bin holding
    the hour ``hours_after`` HOUR0, after it went through ``severities`` in turn (each a
    change: fired, escalated, de-escalated or resolved), one minute apart."""
    rule = AlertRule.from_dict(
        drift_rule(rule_id=rule_id, columns=[column], bin=period.value), CHURN_MODEL
    )
    start_hour = period_start_hour(_HOUR0_HOURS + hours_after, period)
    alert: Alert | None = None
    previous: Severity | None = None
    for minute, severity in enumerate(severities, start=1):
        change = transition(previous, severity)
        assert change is not None, f"{previous} to {severity} is no change"
        at_ms = period_end_ms(start_hour, period) + minute * 60_000
        alert = changed(alert, rule, column, start_hour, change, _STATES[severity], at_ms)
        previous = severity
    assert alert is not None, "give at least one severity"
    return alert


def published_alerts(settings: Settings) -> list[Alert]:
    """Every alert record in the topic, in order (committed transactions only): one per
    change of state."""
    topic = Topics.for_settings(settings).alerts.name
    consumer = Consumer(consumer_config(settings.bootstrap_servers, f"test-{uuid.uuid4()}"))
    try:
        partition = TopicPartition(topic, 0, 0)
        _, end = watermarks(consumer, partition)
        consumer.assign([partition])
        found: list[Alert] = []
        position = 0
        while position < end:
            for message in consumer.consume(1000, timeout=1.0):
                if message.error() is None and message.value() is not None:
                    found.append(ALERT.decode(message.value()))
            (current,) = consumer.position([partition])
            position = max(position, current.offset)
        return found
    finally:
        consumer.close()


def current_alerts(settings: Settings) -> dict[str, Alert]:
    """The newest record of each alert, by key: what compaction keeps."""
    return {alert.key: alert for alert in published_alerts(settings)}
