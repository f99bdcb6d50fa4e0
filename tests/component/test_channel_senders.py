"""The notifier's channel senders (``ChannelSenders``) against local HTTP receivers, no
broker: one channel's hanging receiver neither delays another channel nor queues without
bound, and a failing one is retried, then given up on."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator

import pytest

from driftline.agents.notifier import ChannelSenders, Delivery, Outcome
from driftline.state.alert_evaluation import AlertState, Change, Severity
from driftline.state.alert_rules import AlertRule, Channel, ChannelType
from driftline.state.alerts import changed
from driftline.state.notifications import notification
from driftline.topics.waiting import wait_until
from tests.support.alert_rules import drift_rule
from tests.support.models import CHURN_MODEL, HOUR0
from tests.support.webhooks import Receiver

RULE = AlertRule.from_dict(drift_rule(), CHURN_MODEL)


def delivery(url: str, number: int) -> Delivery:
    state = AlertState(Severity.CRITICAL, 1.0, 0.25, None)
    alert = changed(None, RULE, "age", HOUR0 // 3_600_000 + number, Change.FIRED, state, 0)
    channel = Channel(ChannelType.WEBHOOK, url, secret="k")
    return Delivery(0, number, 0, alert.key, alert.change_id, RULE.key, 0, channel,
                    notification(alert, channel))  # fmt: skip


@pytest.fixture
def outcomes() -> queue.SimpleQueue[Outcome]:
    return queue.SimpleQueue()


@pytest.fixture
def senders(outcomes: queue.SimpleQueue[Outcome]) -> Iterator[ChannelSenders]:
    running = ChannelSenders(timeout_s=1.0, delays=(0.05, 0.05), report=outcomes.put, backlog=3)
    running.start()
    yield running
    running.stop()


def taken(outcomes: queue.SimpleQueue[Outcome], count: int) -> list[Outcome]:
    return [outcomes.get(timeout=10) for _ in range(count)]


def test_a_hanging_channel_delays_no_other_and_sheds_past_its_backlog(
    senders: ChannelSenders, outcomes: queue.SimpleQueue[Outcome]
) -> None:
    with Receiver(hang=True) as hanging, Receiver() as answering:
        senders.send(delivery(hanging.url, 0))
        wait_until(lambda: hanging.taken(), timeout_s=5, what="the first one in flight")
        started = time.perf_counter()
        for number in range(1, 5):  # 3 waiting behind the one in flight, the 4th shed
            senders.send(delivery(hanging.url, number))
        senders.send(delivery(answering.url, 9))
        first, second = taken(outcomes, 2)
        # The shed one is reported at once; the answering channel's within a moment.
        assert (first.delivery.offset, first.attempts) == (4, 0)
        assert "4 deliveries waiting" not in (first.error or "")
        assert "3 deliveries waiting" in (first.error or "")
        assert (second.delivery.offset, second.error) == (9, None)
        assert time.perf_counter() - started < 1.0  # well within the hanging one's timeout
        assert len(answering.taken()) == 1


def test_a_failing_receiver_is_retried_then_given_up_on(
    senders: ChannelSenders, outcomes: queue.SimpleQueue[Outcome]
) -> None:
    with Receiver(status=503) as failing:
        senders.send(delivery(failing.url, 1))
        (outcome,) = taken(outcomes, 1)
        assert (outcome.attempts, outcome.error) == (3, "HTTP 503")
        assert len(failing.taken()) == 3
