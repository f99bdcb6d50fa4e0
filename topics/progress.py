"""How far a consumer group has come through a topic (lag), from committed offsets."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from driftline.settings import Settings
from driftline.stack.waiting import wait_until
from topics.offsets import watermarks
from topics.registry import Topics


class GroupProgress:
    def __init__(self, bootstrap_servers: str, group_id: str, topic: str, partitions: int):
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                # Only reads the group's commits; never subscribes, so never joins it.
                "group.id": group_id,
                "enable.auto.commit": False,
                # The last stable commit: a read-committed reader would wait out (or time
                # out on) the open transaction of a worker killed mid-batch.
                "isolation.level": "read_uncommitted",
            }
        )
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]

    def committed(self) -> int:
        """Messages the group has committed, summed over partitions."""
        found = self._consumer.committed(self._partitions, timeout=10)
        return sum(max(tp.offset, 0) for tp in found)

    def end(self) -> int:
        return sum(watermarks(self._consumer, tp)[1] for tp in self._partitions)

    def lag(self) -> int:
        return self.end() - self.committed()

    def wait_caught_up(self, timeout_s: float = 120) -> None:
        wait_until(lambda: self.lag() <= 0, timeout_s=timeout_s, what="consumer group to catch up",
                   interval_s=0.1)  # fmt: skip

    def close(self) -> None:
        self._consumer.close()


def merge_progress(settings: Settings) -> GroupProgress:
    """Progress of the merge agent through the ingest topic."""
    topics = Topics.for_settings(settings)
    return GroupProgress(
        settings.bootstrap_servers,
        topics.merge_group,
        topics.ingest.name,
        settings.ingest_partitions,
    )
