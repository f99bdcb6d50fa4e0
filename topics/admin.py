"""Creating Driftline's topics with their partition counts and configs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from driftline.topics.catalog import TopicSpec
from driftline.topics.waiting import wait_until


def ensure_topics(
    bootstrap_servers: str, specs: Iterable[TopicSpec[Any, Any]], timeout_s: float = 30
) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    new = [
        NewTopic(spec.name, num_partitions=spec.partitions, replication_factor=1,
                 config=dict(spec.config))
        for spec in specs
    ]  # fmt: skip
    if not new:
        return
    for name, future in admin.create_topics(new, operation_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"could not create topic {name}: {error}") from error
    # Creation returns before every partition has a leader; reads and writes right
    # after it would fail with NOT_LEADER_FOR_PARTITION.
    names = [topic.topic for topic in new]
    wait_until(lambda: _all_led(admin, names), timeout_s=timeout_s, what=f"leaders for {names}")


def _all_led(admin: AdminClient, names: list[str]) -> bool:
    metadata = admin.list_topics(timeout=5)
    for name in names:
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None or not topic.partitions:
            return False
        if any(p.leader < 0 or p.error is not None for p in topic.partitions.values()):
            return False
    return True
