"""What each channel is sent for an alert's change: the webhook's body, idempotency key and
signature (checked with the hmac module, not with the code under test), the Slack text,
the PagerDuty Events v2 fields; and the retry schedule."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import pytest

from driftline.state.alert_evaluation import AlertState, Change, Severity
from driftline.state.alert_rules import (
    AlertRule,
    Channel,
    ChannelType,
    InvalidAlertRuleError,
    record_channels,
)
from driftline.state.alerts import Alert, changed
from driftline.state.bins import HOUR_MS
from driftline.state.notifications import notification, retry_delays
from tests.support.alert_rules import WEBHOOK_SECRET, drift_rule
from tests.support.models import CHURN_MODEL, HOUR0

WEBHOOK = Channel(ChannelType.WEBHOOK, "https://hooks.example/dl", secret=WEBHOOK_SECRET)
SLACK = Channel(ChannelType.SLACK, "https://hooks.slack.example/T0/B0/x")
PAGERDUTY = Channel(
    ChannelType.PAGERDUTY, "https://events.pagerduty.example/v2/enqueue", routing_key="R0UT1NG"
)
RULE = AlertRule.from_dict(drift_rule(), CHURN_MODEL)
BIN_HOUR = HOUR0 // HOUR_MS


def fired() -> Alert:
    """PSI of age 0.31 breaches critical (0.25)."""
    state = AlertState(Severity.CRITICAL, 0.31, 0.25, None)
    return changed(None, RULE, "age", BIN_HOUR, Change.FIRED, state, HOUR0 + HOUR_MS)


def resolved() -> Alert:
    state = AlertState(Severity.OK, 0.05, 0.1, None)
    return changed(fired(), RULE, "age", BIN_HOUR, Change.RESOLVED, state, HOUR0 + 2 * HOUR_MS)


def body(alert: Alert, channel: Channel) -> dict[str, Any]:
    decoded: dict[str, Any] = orjson.loads(notification(alert, channel).body)
    return decoded


def test_webhook_posts_the_alert_with_its_change_and_id() -> None:
    alert = resolved()
    sent = notification(alert, WEBHOOK)
    assert sent.url == "https://hooks.example/dl"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Idempotency-Key"] == alert.change_id == f"{alert.key}#2"
    payload = orjson.loads(sent.body)
    assert payload["change_id"] == alert.change_id
    assert payload["change"] == {
        "seq": 2, "change": "resolved", "severity": "ok", "value": 0.05, "threshold": 0.1,
        "reference": None, "at_ms": HOUR0 + 2 * HOUR_MS,
    }  # fmt: skip
    assert Alert.from_dict(payload) == alert
    assert WEBHOOK_SECRET not in sent.body.decode()


def test_webhook_signature_is_the_hmac_sha256_of_the_exact_body() -> None:
    sent = notification(fired(), WEBHOOK)
    expected = hmac.new(WEBHOOK_SECRET.encode(), sent.body, hashlib.sha256).hexdigest()
    scheme, _, digest = sent.headers["X-Driftline-Signature"].partition("=")
    assert scheme == "sha256"
    assert hmac.compare_digest(digest, expected)
    forged = hmac.new(b"another secret", sent.body, hashlib.sha256).hexdigest()
    assert digest != forged


def test_the_same_change_gives_the_same_request() -> None:
    assert notification(fired(), WEBHOOK) == notification(fired(), WEBHOOK)


def test_slack_text_says_rule_model_column_bin_severity_value_and_threshold() -> None:
    text = body(fired(), SLACK)["text"]
    for part in ("CRITICAL fired", "psi of age", "0.31", "threshold 0.25", "shop/churn",
                 "hour bin from 2025-11-24 16:00 UTC", "rule drift-age"):  # fmt: skip
        assert part in text
    assert body(resolved(), SLACK)["text"].startswith("RESOLVED: psi of age = 0.05")


def test_pagerduty_trigger_carries_the_events_v2_fields() -> None:
    alert = fired()
    event = body(alert, PAGERDUTY)
    assert set(event) == {"routing_key", "event_action", "dedup_key", "payload"}
    assert event["routing_key"] == "R0UT1NG"
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == alert.key
    payload = event["payload"]
    assert {"summary", "source", "severity"} <= set(payload)
    assert payload["severity"] == "critical"
    assert payload["source"] == "shop/churn"
    assert "psi of age" in payload["summary"]
    assert payload["custom_details"]["change_id"] == alert.change_id


def test_a_warning_triggers_with_severity_warning() -> None:
    state = AlertState(Severity.WARNING, 0.2, 0.1, None)
    alert = changed(None, RULE, "age", BIN_HOUR, Change.FIRED, state, HOUR0)
    assert body(alert, PAGERDUTY)["payload"]["severity"] == "warning"


def test_pagerduty_resolve_closes_the_trigger_of_the_same_alert() -> None:
    trigger, resolve = body(fired(), PAGERDUTY), body(resolved(), PAGERDUTY)
    assert resolve == {
        "routing_key": "R0UT1NG", "event_action": "resolve", "dedup_key": trigger["dedup_key"],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("attempts", "delays"),
    [(1, ()), (2, (0.5,)), (5, (0.5, 1.0, 2.0, 4.0)), (0, ())],
)
def test_retries_back_off_exponentially(attempts: int, delays: tuple[float, ...]) -> None:
    assert retry_delays(attempts, 0.5) == delays


def test_retry_delays_are_capped() -> None:
    assert retry_delays(12, 1.0, max_s=60.0)[-3:] == (60.0, 60.0, 60.0)


def test_channels_are_read_back_from_a_rule_record() -> None:
    rule = AlertRule.from_dict(
        drift_rule(channels=[WEBHOOK.to_dict(), SLACK.to_dict(), PAGERDUTY.to_dict()]),
        CHURN_MODEL,
    )
    assert record_channels(rule.to_dict()) == (WEBHOOK, SLACK, PAGERDUTY)
    assert record_channels({"rule_id": "r"}) == ()
    with pytest.raises(InvalidAlertRuleError, match=r"channels\[0\]\.url"):
        record_channels({"channels": [{"type": "slack", "url": "ftp://x"}]})
