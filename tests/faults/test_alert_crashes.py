"""Alerts through SIGKILLs (issue 11): each change of state is published once and reaches
the webhook, whatever moment the worker dies at.

Drifting hours fire alerts; a deletion with ``update_metrics`` resolves half of them. The
receiver answers slowly, so the worker is killed once the evaluator has published the
changes and before the notifier has delivered them all, and once more while the
resolutions are being published. Afterwards:

- the alerts topic holds each change once: per alert, changes numbered 1, 2, ... with no
  gap and no repeat;
- the receiver got every change, under its change id as ``Idempotency-Key`` (a repeat
  after a crash carries the same key, so the receiver can drop it);
- the alerts that are open are exactly the hours whose served PSI breaches the rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from driftline.client import Driftline
from driftline.settings import Settings
from driftline.stack.worker import WorkerProcess
from driftline.state.alert_rules import AlertRule
from driftline.state.bins import HOUR_MS
from driftline.topics.alert_rules import publish_rule
from driftline.topics.catalog import Topics
from driftline.topics.producer import CheckedProducer
from driftline.topics.waiting import wait_until
from tests.support.alert_rules import drift_rule
from tests.support.alerts import current_alerts, published_alerts
from tests.support.deletions import send_id_deletion
from tests.support.hourly_bins import bins_in_redis
from tests.support.models import CHURN_BASELINE, CHURN_MODEL, CHURN_SPEC, HOUR0, publish_churn
from tests.support.webhooks import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.faults]

HOURS = 6


def drifting_rows(hour: int) -> list[dict[str, Any]]:
    return [{"event_id": f"d{hour}-{i}", "timestamp": HOUR0 + hour * HOUR_MS + i,
             "age": 95, "plan": "free", "score": 0.5} for i in range(40)]  # fmt: skip


def baseline_rows(hour: int) -> list[dict[str, Any]]:
    return [{"event_id": f"n{hour}-{i}", "timestamp": HOUR0 + hour * HOUR_MS + i,
             "age": 18 + i % 60, "plan": ["free", "pro", "team"][i % 3],
             "score": (i % 100) / 100} for i in range(120)]  # fmt: skip


def test_each_change_is_published_and_delivered_once_through_sigkills(
    settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    with Receiver(delay_s=0.4) as receiver:
        rule = drift_rule(channels=[{"type": "webhook", "url": receiver.url, "secret": "k"}])
        with Driftline(settings) as client:
            client.register_model(CHURN_SPEC, CHURN_BASELINE)
            publish_rule(CheckedProducer(settings.bootstrap_servers),
                         Topics.for_settings(settings).alert_rules.name,
                         AlertRule.from_dict(rule, CHURN_MODEL))  # fmt: skip
            worker = start_worker(settings)
            rows = [row for h in range(HOURS) for row in baseline_rows(h) + drifting_rows(h)]
            publish_churn(client, rows)

        # Killed with every hour's alert published, most of them not delivered yet.
        wait_until(lambda: len(current_alerts(settings)) == HOURS, timeout_s=60,
                   what="an alert per drifting hour")  # fmt: skip
        assert len(receiver.taken()) < HOURS
        worker.kill()
        worker = start_worker(settings)

        # Half the hours lose their drifting events: their alerts resolve. Killed while
        # the resolutions come.
        doomed = [row["event_id"] for h in range(0, HOURS, 2) for row in drifting_rows(h)]
        send_id_deletion(settings, "shop", "churn", "undrift", doomed, update_metrics=True)
        wait_until(lambda: sum(not a.open for a in current_alerts(settings).values()) >= 1,
                   timeout_s=60, what="a first resolution")  # fmt: skip
        worker.kill()
        start_worker(settings)

        open_hours = {h for h in range(HOURS) if h % 2}
        wait_until(lambda: {a.bin_start_hour - HOUR0 // HOUR_MS for a in
                            current_alerts(settings).values() if a.open} == open_hours,
                   timeout_s=60, what="the undrifted hours resolved")  # fmt: skip
        records = published_alerts(settings)
        change_ids = [alert.change_id for alert in records]
        wait_until(lambda: set(change_ids) <= delivered_keys(receiver), timeout_s=60,
                   what="every change delivered")  # fmt: skip

    # Each change published once: per alert, 1, 2, ... with no gap and no repeat.
    assert Counter(change_ids).most_common(1)[0][1] == 1
    per_alert: dict[str, list[int]] = {}
    for alert in records:
        per_alert.setdefault(alert.key, []).append(alert.last_change.seq)
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in per_alert.values()), per_alert
    # (An hour may first fire as a warning, its bin emitted with part of its events.)
    final = {a.bin_start_hour - HOUR0 // HOUR_MS: a for a in current_alerts(settings).values()}
    assert {h: a.severity.value for h, a in final.items()} == {
        h: "critical" if h in open_hours else "ok" for h in range(HOURS)
    }
    # Delivered: each change under its own key; a repeat only ever re-sends one.
    assert delivered_keys(receiver) == set(change_ids)
    for delivery in receiver.taken():
        assert delivery.json()["change_id"] == delivery.headers["Idempotency-Key"]
    # The open alerts are the hours whose served PSI breaches the rule's 0.25.
    served = bins_in_redis(settings)
    breaching = {h - HOUR0 // HOUR_MS for h, b in served.items()
                 if b["metrics"]["drift"]["age"]["psi"] > 0.25}  # fmt: skip
    assert breaching == open_hours


def delivered_keys(receiver: Receiver) -> set[str]:
    return {delivery.headers["Idempotency-Key"] for delivery in receiver.taken()}
