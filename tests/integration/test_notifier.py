"""The notifier on the real broker, with local HTTP receivers (issue 11, "Notifications"):
each change reaches a webhook once, signed and with its idempotency key; Slack and
PagerDuty payloads arrive; a failing receiver is retried, then dead-lettered and counted;
a hanging receiver does not delay another channel; a restart sends again only what was
not delivered."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from driftline.agents.notifier import Notifier
from driftline.settings import Settings
from driftline.stack import LocalKafka
from driftline.state.alert_evaluation import AlertState, Change, Severity
from driftline.state.alert_rules import AlertRule
from driftline.state.alerts import Alert, changed
from driftline.state.bins import HOUR_MS
from driftline.topics.admin import ensure_topics
from driftline.topics.alert_rules import publish_rule, withdraw_rule
from driftline.topics.catalog import Topics
from driftline.topics.producer import CheckedProducer
from driftline.topics.progress import ProgressReader
from driftline.topics.waiting import wait_until
from tests.support.alert_rules import WEBHOOK_SECRET, drift_rule
from tests.support.models import CHURN_MODEL, HOUR0
from tests.support.webhooks import Receiver

pytestmark = pytest.mark.integration

BIN_HOUR = HOUR0 // HOUR_MS
ATTEMPTS = 3
OUTAGE_S = 15


@dataclass
class Bench:
    """The test's topics, a producer onto them, and its notifiers and receivers."""

    settings: Settings
    topics: Topics
    producer: CheckedProducer
    start_notifier: Callable[..., Notifier]
    receiver: Callable[..., Receiver]
    threads: dict[Notifier, threading.Thread]

    def rule(self, rule_id: str, *channels: dict[str, str]) -> AlertRule:
        rule = AlertRule.from_dict(
            drift_rule(rule_id=rule_id, channels=list(channels)), CHURN_MODEL
        )
        publish_rule(self.producer, self.topics.alert_rules.name, rule)
        return rule

    def publish(self, alert: Alert) -> float:
        """Produce ``alert`` on the alerts topic; when it was flushed (``perf_counter``, as
        the receiver's times)."""
        spec = self.topics.alerts
        self.producer.produce(spec.name, spec.key.encode(alert.key), spec.value.encode(alert))
        self.producer.flush(30.0)
        return time.perf_counter()

    def stop(self, notifier: Notifier) -> None:
        notifier.stop()
        self.threads.pop(notifier).join(30)

    def progress(self) -> tuple[int, int]:
        """(alert changes the notifier has not committed, dead letters written)."""
        reader = ProgressReader(self.settings.bootstrap_servers)
        try:
            alerts = self.topics.alerts.name
            stage = reader.stage("notifier", alerts, 1, lambda: reader.committed(
                self.topics.notifier_group, alerts, 1))  # fmt: skip
            return stage.lag, reader.records(self.topics.notification_dead_letters.name, 1)
        finally:
            reader.close()


@pytest.fixture
def bench_on() -> Iterator[Callable[[Settings], Bench]]:
    """A bench on the topics of the settings given (a test's own broker, say)."""
    threads: dict[Notifier, threading.Thread] = {}
    receivers: list[Receiver] = []
    yield lambda settings: _bench(settings, threads, receivers)
    for notifier, thread in threads.items():
        notifier.stop()
        thread.join(30)
    for each in receivers:
        each.__exit__()


@pytest.fixture
def bench(settings: Settings, bench_on: Callable[[Settings], Bench]) -> Bench:
    return bench_on(settings)


def _bench(
    settings: Settings,
    threads: dict[Notifier, threading.Thread],
    receivers: list[Receiver],
) -> Bench:
    topics = Topics.for_settings(settings)
    ensure_topics(settings.bootstrap_servers, topics.owned)

    def start_notifier(timeout_s: float = 2.0) -> Notifier:
        notifier = Notifier(settings.bootstrap_servers, topics, timeout_s, ATTEMPTS, 0.1,
                            settings.session_timeout_ms)  # fmt: skip
        thread = threading.Thread(target=notifier.run, daemon=True)
        thread.start()
        threads[notifier] = thread
        return notifier

    def receiver(status: int = 200, hang: bool = False) -> Receiver:
        receivers.append(Receiver(status=status, hang=hang).__enter__())
        return receivers[-1]

    bench = Bench(settings, topics, CheckedProducer(settings.bootstrap_servers), start_notifier,
                  receiver, threads)  # fmt: skip
    return bench


def webhook(receiver: Receiver) -> dict[str, str]:
    return {"type": "webhook", "url": receiver.url, "secret": WEBHOOK_SECRET}


def fired(rule: AlertRule, column: str = "age") -> Alert:
    state = AlertState(Severity.CRITICAL, 0.31, 0.25, None)
    return changed(None, rule, column, BIN_HOUR, Change.FIRED, state, HOUR0)


def resolved(alert: Alert, rule: AlertRule) -> Alert:
    state = AlertState(Severity.OK, 0.05, 0.1, None)
    return changed(alert, rule, alert.column, BIN_HOUR, Change.RESOLVED, state, HOUR0 + 1)


def arrived(receiver: Receiver, count: int, timeout_s: float = 30) -> None:
    wait_until(lambda: len(receiver.taken()) >= count, timeout_s=timeout_s,
               what=f"{count} requests at the receiver", interval_s=0.01)  # fmt: skip


def test_a_webhook_gets_each_change_once_signed_with_its_idempotency_key(bench: Bench) -> None:
    receiver = bench.receiver()
    rule = bench.rule("drift-age", webhook(receiver))
    first = fired(rule)
    second = resolved(first, rule)
    bench.start_notifier()
    bench.publish(first)
    bench.publish(second)
    arrived(receiver, 2)
    wait_until(lambda: bench.progress()[0] == 0, timeout_s=30, what="the notifier's commit")
    time.sleep(0.5)  # a repeat would have come by now

    requests = receiver.taken()
    assert [r.headers["Idempotency-Key"] for r in requests] == [first.change_id, second.change_id]
    for request, alert in zip(requests, (first, second), strict=True):
        digest = hmac.new(WEBHOOK_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-Driftline-Signature"] == f"sha256={digest}"
        body = request.json()
        assert body["change_id"] == alert.change_id
        assert body["change"] == alert.last_change.to_dict()
    assert bench.progress()[1] == 0


def test_slack_and_pagerduty_payloads_arrive(bench: Bench) -> None:
    slack, pagerduty = bench.receiver(), bench.receiver()
    rule = bench.rule(
        "drift-age",
        {"type": "slack", "url": slack.url},
        {"type": "pagerduty", "url": pagerduty.url, "routing_key": "R0UT1NG"},
    )
    alert = fired(rule)
    bench.start_notifier()
    bench.publish(alert)
    bench.publish(resolved(alert, rule))
    arrived(slack, 2)
    arrived(pagerduty, 2)

    texts = [r.json()["text"] for r in slack.taken()]
    assert str(texts[0]).startswith("CRITICAL fired: psi of age")
    assert str(texts[1]).startswith("RESOLVED: psi of age")
    trigger, resolve = (r.json() for r in pagerduty.taken())
    assert trigger["event_action"] == "trigger"
    assert resolve["event_action"] == "resolve"
    assert trigger["routing_key"] == resolve["routing_key"] == "R0UT1NG"
    assert trigger["dedup_key"] == resolve["dedup_key"] == alert.key


def test_a_failing_receiver_is_retried_then_dead_lettered_and_counted(bench: Bench) -> None:
    failing, healthy = bench.receiver(status=500), bench.receiver()
    rule = bench.rule("drift-age", webhook(failing), webhook(healthy))
    bench.start_notifier()
    bench.publish(fired(rule))
    arrived(healthy, 1)
    arrived(failing, ATTEMPTS)
    wait_until(lambda: bench.progress() == (0, 1), timeout_s=30,
               what="the dead letter and the commit past it")  # fmt: skip
    assert len(failing.taken()) == ATTEMPTS
    assert len(healthy.taken()) == 1


def test_a_hanging_receiver_does_not_delay_another_channel(bench: Bench) -> None:
    hanging, healthy = bench.receiver(hang=True), bench.receiver()
    rule = bench.rule("drift-age", webhook(hanging), webhook(healthy))
    timeout_s = 5.0
    bench.start_notifier(timeout_s=timeout_s)
    delays = []
    for column in ("age", "plan", "score"):
        published = bench.publish(fired(rule, column))
        arrived(healthy, len(delays) + 1)
        delays.append(healthy.taken()[-1].at - published)
    # Each change reached the healthy channel while the hanging one still held the first.
    print(f"healthy channel's delivery times beside a hanging one: {delays}")
    assert max(delays) < timeout_s / 5, delays
    assert len(hanging.taken()) == 1


def test_a_restart_sends_again_only_what_was_not_delivered(bench: Bench) -> None:
    healthy, hanging = bench.receiver(), bench.receiver(hang=True)
    delivered_rule = bench.rule("delivered", webhook(healthy))
    held_rule = bench.rule("held", webhook(hanging))
    notifier = bench.start_notifier(timeout_s=30.0)
    bench.publish(fired(delivered_rule))
    arrived(healthy, 1)
    held = fired(held_rule)
    bench.publish(held)
    arrived(hanging, 1)
    bench.stop(notifier)  # the held change is in flight: not committed

    hanging.hang = False  # it answers from now on
    bench.start_notifier()
    arrived(hanging, 2)
    wait_until(lambda: bench.progress()[0] == 0, timeout_s=30, what="the notifier's commit")
    time.sleep(0.5)
    assert len(healthy.taken()) == 1
    keys = [r.headers["Idempotency-Key"] for r in hanging.taken()]
    assert keys == [held.change_id, held.change_id]


def test_a_deleted_rule_notifies_only_the_resolutions_of_its_alerts(bench: Bench) -> None:
    receiver = bench.receiver()
    rule = bench.rule("drift-age", webhook(receiver))
    withdraw_rule(bench.producer, bench.topics.alert_rules.name, rule.key)
    alert = fired(rule)
    bench.start_notifier()
    bench.publish(alert)  # fired after the deletion (a race): no one to tell
    bench.publish(resolved(alert, rule))  # the deletion's resolution: its channels hear it
    arrived(receiver, 1)
    wait_until(lambda: bench.progress()[0] == 0, timeout_s=30, what="the notifier's commit")
    assert [r.json()["change"]["change"] for r in receiver.taken()] == ["resolved"]


def test_the_worker_runs_the_notifier(bench: Bench, start_worker: Callable[..., object]) -> None:
    receiver = bench.receiver()
    rule = bench.rule("drift-age", webhook(receiver))
    start_worker(bench.settings)
    alert = fired(rule)
    bench.publish(alert)
    arrived(receiver, 1, timeout_s=60)
    assert receiver.taken()[0].headers["Idempotency-Key"] == alert.change_id


def test_the_notifier_waits_out_a_broker_outage(
    settings: Settings, own_kafka: LocalKafka, bench_on: Callable[[Settings], Bench]
) -> None:
    bench = bench_on(settings.with_overrides(kafka_bootstrap_servers=own_kafka.bootstrap_servers))
    hanging, healthy = bench.receiver(hang=True), bench.receiver()
    rule = bench.rule("drift-age", webhook(hanging), webhook(healthy))
    bench.start_notifier(timeout_s=2.0)
    (thread,) = bench.threads.values()
    bench.publish(fired(rule))
    arrived(healthy, 1)
    arrived(hanging, 1)
    own_kafka.stop()  # the hanging channel's dead letter comes due during the outage
    time.sleep(OUTAGE_S)  # the outage itself, not a wait for a condition
    assert thread.is_alive(), "the notifier stopped during the outage"
    assert len(hanging.taken()) == ATTEMPTS
    own_kafka.start()

    hanging.hang = False  # it answers from now on
    bench.publish(fired(rule, "plan"))
    arrived(healthy, 2, timeout_s=120)
    arrived(hanging, ATTEMPTS + 1)
    wait_until(lambda: bench.progress() == (0, 1), timeout_s=120,
               what="the dead letter written and everything committed")  # fmt: skip
    assert thread.is_alive()
