"""The alerts topic as a test reads it: every record the evaluator committed."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition

from driftline.settings import Settings
from driftline.state.alerts import Alert
from driftline.topics.alerts import ALERT
from driftline.topics.catalog import Topics
from driftline.topics.clients import consumer_config
from driftline.topics.offsets import watermarks


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
