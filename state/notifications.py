"""What the notifier sends for an alert's change, per channel type (SPEC §3 "Alerts").

Every notification is one HTTP POST (``Notification``); the notifier (``agents.notifier``)
only sends it, retries it on the schedule ``retry_delays`` gives and dead-letters it at
last. The change announced is the alert record's last one, named for ever by
``Alert.change_id``: the same change always gives the same request, so a repeat (a retry
whose answer was lost, a notifier restarted before its commit) is recognisable.

- **webhook**: the alert as JSON (``Alert.to_dict``, plus ``change``, the change announced,
  and ``change_id``), with ``Idempotency-Key: <change_id>`` and a signature,
  ``X-Driftline-Signature: sha256=<hex>``, the HMAC-SHA256 of the body's exact bytes keyed
  with the channel's secret (UTF-8). A receiver verifies it by computing the same HMAC
  over the raw body it received (before parsing it) and comparing the two with a
  constant-time comparison (Python: ``hmac.compare_digest``); it drops a request whose
  ``Idempotency-Key`` it has seen before.
- **slack**: an incoming-webhook payload, ``{"text": ...}``: one line saying what changed.
- **pagerduty**: an Events v2 event; ``dedup_key`` is the alert's key, so every change of
  one alert updates one incident and its resolution resolves it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from driftline.state.alert_evaluation import Change, Severity
from driftline.state.alert_rules import Channel, ChannelType
from driftline.state.alerts import Alert
from driftline.state.bins import HOUR_MS

SIGNATURE_HEADER = "X-Driftline-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
# PagerDuty refuses a summary longer than this (Events API v2).
PAGERDUTY_SUMMARY_MAX = 1024
# However many attempts a channel is given, it never waits longer than this between two.
RETRY_DELAY_MAX_S = 60.0

_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class Notification:
    """One HTTP POST: where, with which headers, and the exact body bytes."""

    url: str
    headers: Mapping[str, str]
    body: bytes


def notification(alert: Alert, channel: Channel) -> Notification:
    """The request announcing ``alert``'s last change on ``channel``."""
    return _BUILDERS[channel.type](alert, channel)


def retry_delays(
    attempts: int, base_s: float, max_s: float = RETRY_DELAY_MAX_S
) -> tuple[float, ...]:
    """The waits before the 2nd, 3rd, ... of ``attempts`` attempts: ``base_s`` doubling
    each time (capped at ``max_s``), so a receiver that restarts is reached within seconds
    and one that is down is not hammered."""
    return tuple(min(max_s, base_s * 2.0**retry) for retry in range(max(0, attempts - 1)))


def signature(body: bytes, secret: str) -> str:
    """The value of the signature header: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def summary(alert: Alert) -> str:
    """One line saying what changed: severity and change, metric and column, value against
    threshold, model, bin and rule."""
    change = alert.last_change
    if change.change is Change.RESOLVED:
        headline = "RESOLVED"
    else:
        headline = f"{change.severity.value.upper()} {change.change.value}"
    watched = alert.metric if alert.column is None else f"{alert.metric} of {alert.column}"
    return (
        f"{headline}: {watched} = {change.value:g} (threshold {change.threshold:g}) on "
        f"{alert.project_id}/{alert.model_id}, {alert.bin.value} bin from "
        f"{_utc(alert.bin_start_hour * HOUR_MS)}; rule {alert.rule_id}"
    )


def _announcement(alert: Alert) -> dict[str, Any]:
    """The alert with the change it announces beside it."""
    return {
        **alert.to_dict(),
        "change": alert.last_change.to_dict(),
        "change_id": alert.change_id,
    }


def _webhook(alert: Alert, channel: Channel) -> Notification:
    if channel.secret is None:
        raise ValueError("a webhook channel needs its secret to sign the body")
    body = orjson.dumps(_announcement(alert))
    headers = {
        **_JSON,
        IDEMPOTENCY_HEADER: alert.change_id,
        SIGNATURE_HEADER: signature(body, channel.secret),
    }
    return Notification(channel.url, headers, body)


def _slack(alert: Alert, channel: Channel) -> Notification:
    return Notification(channel.url, _JSON, orjson.dumps({"text": summary(alert)}))


def _pagerduty(alert: Alert, channel: Channel) -> Notification:
    """An Events v2 event: ``trigger`` (created or updated) until the alert resolves."""
    event: dict[str, Any] = {"routing_key": channel.routing_key, "dedup_key": alert.key}
    if alert.last_change.change is Change.RESOLVED:
        event["event_action"] = "resolve"
    else:
        event["event_action"] = "trigger"
        event["payload"] = {
            "summary": summary(alert)[:PAGERDUTY_SUMMARY_MAX],
            "source": f"{alert.project_id}/{alert.model_id}",
            "severity": "critical" if alert.severity is Severity.CRITICAL else "warning",
            "custom_details": _announcement(alert),
        }
    return Notification(channel.url, _JSON, orjson.dumps(event))


_BUILDERS: Mapping[ChannelType, Callable[[Alert, Channel], Notification]] = {
    ChannelType.WEBHOOK: _webhook,
    ChannelType.SLACK: _slack,
    ChannelType.PAGERDUTY: _pagerduty,
}


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
