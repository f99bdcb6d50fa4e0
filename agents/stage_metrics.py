"""A runner's service metrics (``topics.service_metrics``), recorded once per batch.

The batch engine calls these hooks with what a batch already computed (its size, its
duration, its committed outputs, its positions), so no message is looked at again: the
hot path pays a few counter increments per batch. Each label value is bound once here.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from driftline.topics.dead_letters import reason_in, reason_kind
from driftline.topics.service_metrics import (
    BATCH_DURATION,
    BATCH_SIZE,
    CONSUMER_LAG,
    DEAD_LETTERS,
    MESSAGES_CONSUMED,
    MESSAGES_PRODUCED,
)

if TYPE_CHECKING:
    from driftline.agents.runtime import Outgoing


class StageMetrics:
    """The metrics of one stage (a runner's name) reading one input topic."""

    def __init__(self, stage: str, input_topic: str, dead_letter_topic: str) -> None:
        self._stage = stage
        self._input_topic = input_topic
        self._dead_letter_topic = dead_letter_topic
        self._consumed = MESSAGES_CONSUMED.labels(stage, input_topic)
        self._batch_size = BATCH_SIZE.labels(stage)
        self._batch_duration = BATCH_DURATION.labels(stage)

    def batch_handled(self, messages: int, seconds: float) -> None:
        """A batch of ``messages`` handled and committed in ``seconds``."""
        self._consumed.inc(messages)
        self._batch_size.observe(messages)
        self._batch_duration.observe(seconds)

    def committed(self, outgoing: Sequence[Outgoing]) -> None:
        """Messages a committed transaction wrote, counted by topic; its dead letters by
        the kind of their reason."""
        by_topic = Counter(out.topic for out in outgoing if out.topic)
        for topic, count in by_topic.items():
            MESSAGES_PRODUCED.labels(self._stage, topic).inc(count)
        if by_topic[self._dead_letter_topic]:
            kinds = Counter(
                reason_kind(reason_in(out.headers))
                for out in outgoing
                if out.topic == self._dead_letter_topic
            )
            for kind, count in kinds.items():
                DEAD_LETTERS.labels(self._stage, kind).inc(count)

    def lag(self, partition: int, high_watermark: int, position: int) -> None:
        """A partition's lag after a batch; nothing while either end is unknown (< 0)."""
        if high_watermark >= 0 and position >= 0:
            lag = max(0, high_watermark - position)
            CONSUMER_LAG.labels(self._stage, self._input_topic, str(partition)).set(lag)

    def forget(self, partition: int) -> None:
        """A revoked partition's lag is another process's to report."""
        with contextlib.suppress(KeyError):  # never reported
            CONSUMER_LAG.remove(self._stage, self._input_topic, str(partition))
