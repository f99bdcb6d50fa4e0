"""The notifier commits an alert's offset only once every delivery of it and of every
alert before it is done, so a restart re-sends only what was not; and its dead letters
name the channel without its secrets."""

from __future__ import annotations

from driftline.agents.notifier import Delivery, Outcome, PendingOffsets, dead_letter
from driftline.state.alert_rules import Channel, ChannelType
from driftline.state.notifications import Notification


def test_commits_up_to_the_first_message_not_done() -> None:
    pending = PendingOffsets()
    pending.assigned(0, generation=1)
    pending.read(0, 10, deliveries=2)
    pending.read(0, 11, deliveries=1)
    pending.read(0, 12, deliveries=0)  # its rule was deleted: nothing to send
    assert pending.committable() == {0: 10}
    pending.done(0, 11, generation=1)
    assert pending.committable() == {0: 10}
    pending.done(0, 10, generation=1)
    assert pending.committable() == {0: 10}
    pending.done(0, 10, generation=1)
    assert pending.committable() == {0: 13}


def test_nothing_to_commit_before_a_message_is_read() -> None:
    pending = PendingOffsets()
    pending.assigned(0, generation=1)
    assert pending.committable() == {}


def test_a_delivery_of_an_earlier_assignment_does_not_count() -> None:
    pending = PendingOffsets()
    pending.assigned(0, generation=1)
    pending.read(0, 5, deliveries=1)
    pending.revoked(0)
    pending.assigned(0, generation=2)
    pending.read(0, 5, deliveries=1)
    pending.done(0, 5, generation=1)  # still in flight when the partition moved
    assert pending.committable() == {0: 5}
    pending.done(0, 5, generation=2)
    assert pending.committable() == {0: 6}


def test_a_revoked_partition_is_not_committed() -> None:
    pending = PendingOffsets()
    pending.assigned(0, generation=1)
    pending.read(0, 5, deliveries=0)
    pending.revoked(0)
    pending.read(0, 6, deliveries=0)
    assert pending.committable() == {}


def test_a_dead_letter_names_the_channel_without_its_secrets() -> None:
    channel = Channel(
        ChannelType.SLACK, "https://user:pw@hooks.slack.example:8443/services/T0/B0/s3cret"
    )
    request = Notification(channel.url, {}, b"{}")
    delivery = Delivery(0, 7, 1, "shop/churn/r/hour/1/age", "shop/churn/r/hour/1/age#2",
                        "shop/churn/r", 1, channel, request)  # fmt: skip
    letter = dead_letter(Outcome(delivery, 5, "HTTP 500"), failed_at_ms=123)
    assert letter == {
        "change_id": "shop/churn/r/hour/1/age#2",
        "alert_key": "shop/churn/r/hour/1/age",
        "rule_key": "shop/churn/r",
        "channel": {"index": 1, "type": "slack", "origin": "https://hooks.slack.example:8443"},
        "attempts": 5,
        "error": "HTTP 500",
        "failed_at_ms": 123,
    }
