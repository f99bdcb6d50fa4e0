"""Watermark look-ups that ride out a just-created topic's leader election."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

# Errors a partition gives while a just-created topic's leader takes over.
_LEADERSHIP_SETTLING = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TIMED_OUT,
}


def watermarks(consumer: Consumer, tp: TopicPartition, timeout_s: float = 10) -> tuple[int, int]:
    """(low, high) offsets of a partition, retrying while its leadership settles."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
            return int(low), int(high)
        except KafkaException as error:
            if error.args[0].code() not in _LEADERSHIP_SETTLING or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
