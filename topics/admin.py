"""Creating Driftline's topics with their partition counts and configs."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from topics.registry import TopicSpec


def ensure_topics(
    bootstrap_servers: str, specs: Iterable[TopicSpec], timeout_s: float = 30
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


def partition_count(bootstrap_servers: str, topic: str, timeout_s: float = 10) -> int:
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    metadata = admin.list_topics(topic, timeout=timeout_s)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise RuntimeError(f"topic {topic} does not exist")
    return len(found.partitions)
