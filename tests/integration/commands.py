"""Deletion commands produced straight to the ingest topic, as the wire format allows.

Tests of the pipeline use these instead of the REST API, which has tests of its own:
they show that the merge agent does the right thing with whatever producer sent them.
"""

from __future__ import annotations

from collections import defaultdict

from driftline.settings import Settings
from topics.messages import (
    deletion_key,
    encode_delete,
    encode_delete_ids,
    encode_delete_range,
    ingest_key,
)
from topics.partitioning import partition_for
from topics.producer import CheckedProducer
from topics.registry import Topics


def send_deletes(
    settings: Settings, project_id: str, model_id: str, event_ids: list[str], update_metrics: bool
) -> None:
    """One ``delete`` message per id, keyed like the event."""
    producer = CheckedProducer(settings.bootstrap_servers)
    topic = Topics.for_settings(settings).ingest.name
    for event_id in event_ids:
        value = encode_delete(project_id, model_id, event_id, update_metrics=update_metrics)
        producer.produce(topic, ingest_key(project_id, model_id, event_id), value)
    producer.flush()


def send_id_deletion(
    settings: Settings,
    project_id: str,
    model_id: str,
    deletion_id: str,
    event_ids: list[str],
    update_metrics: bool,
) -> None:
    """A delete-by-ids request: each partition gets the ids that hash to it."""
    by_partition: dict[int, list[str]] = defaultdict(list)
    for event_id in event_ids:
        key = ingest_key(project_id, model_id, event_id)
        by_partition[partition_for(key, settings.ingest_partitions)].append(event_id)
    producer = CheckedProducer(settings.bootstrap_servers)
    topic = Topics.for_settings(settings).ingest.name
    for partition, ids in by_partition.items():
        value = encode_delete_ids(project_id, model_id, deletion_id, ids, update_metrics)
        producer.produce(topic, deletion_key(project_id, model_id), value, partition=partition)
    producer.flush()


def send_range_deletion(
    settings: Settings,
    project_id: str,
    model_id: str,
    deletion_id: str,
    start_ms: int,
    end_ms: int,
    update_metrics: bool,
) -> None:
    """A time-range deletion: the same command to every partition."""
    producer = CheckedProducer(settings.bootstrap_servers)
    topic = Topics.for_settings(settings).ingest.name
    value = encode_delete_range(project_id, model_id, deletion_id, start_ms, end_ms, update_metrics)
    for partition in range(settings.ingest_partitions):
        producer.produce(topic, deletion_key(project_id, model_id), value, partition=partition)
    producer.flush()
