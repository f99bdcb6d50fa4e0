"""Deletion commands produced straight to the ingest topic, as the wire format allows, and
their progress as the workers report it.

Tests of the pipeline use these instead of a running API process (which has tests of its
own): the same messages the API would send, produced here, so a test needs only workers.
"""

from __future__ import annotations

from typing import Any

from driftline.api.deletions import deletion_messages
from driftline.api.requests import DeleteRequest
from driftline.settings import Settings
from driftline.topics.catalog import Topics
from driftline.topics.messages import deletion_key, encode_delete, ingest_key
from driftline.topics.producer import CheckedProducer
from tests.support.pipeline import worker_get


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
    """A delete-by-ids request as the API sends it: each partition gets its own ids."""
    request = DeleteRequest(project_id, model_id, tuple(event_ids), None, update_metrics)
    _send(settings, request, deletion_id)


def send_range_deletion(
    settings: Settings,
    project_id: str,
    model_id: str,
    deletion_id: str,
    start_ms: int,
    end_ms: int,
    update_metrics: bool,
) -> None:
    """A time-range deletion as the API sends it: the same command to every partition."""
    request = DeleteRequest(project_id, model_id, None, (start_ms, end_ms), update_metrics)
    _send(settings, request, deletion_id)


def _send(settings: Settings, request: DeleteRequest, deletion_id: str) -> None:
    producer = CheckedProducer(settings.bootstrap_servers)
    topic = Topics.for_settings(settings).ingest.name
    key = deletion_key(request.project_id, request.model_id)
    messages = deletion_messages(
        request, deletion_id, settings.ingest_partitions, settings.max_event_bytes
    )
    for partition, value in messages:
        producer.produce(topic, key, value, partition=partition)
    producer.flush()


def deletion_progress(settings: Settings, deletion_id: str) -> dict[str, dict[str, Any]]:
    """A deletion's record on each partition of the worker at ``settings.worker_url``."""
    url = f"{settings.worker_url}/internal/deletions/{deletion_id}"
    found: dict[str, dict[str, Any]] = worker_get(settings, url)["partitions"]
    return found


def deletion_finished(settings: Settings, deletion_id: str, partitions: int) -> bool:
    """Done on every one of ``partitions`` partitions."""
    records = deletion_progress(settings, deletion_id)
    return len(records) == partitions and all(r["state"] == "done" for r in records.values())
