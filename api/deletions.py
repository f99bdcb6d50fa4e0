"""A delete request as messages on the ingest topic, and its record.

By ids: each id goes to the partition that holds its event (the key ``project/model/id``
hashed as Kafka does), in chunks that fit one message. By time range: one command to
every partition, each of which finds its own events through its hour index. Each
partition counts the commands it applied, so the status knows how many to expect.

The record (``deletion_record``) goes to the deletion-requests topic
(``topics.deletion_requests``), where the status endpoint finds it: not to Redis, which
may be wiped.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

from driftline.api.requests import DeleteRequest
from driftline.state.names import model_key
from driftline.topics.messages import encode_delete_ids, encode_delete_range, id_chunks, ingest_key
from driftline.topics.partitioning import partition_for


def deletion_messages(
    request: DeleteRequest, deletion_id: str, partitions: int, max_bytes: int
) -> list[tuple[int, bytes]]:
    """(partition, value) of every message the request needs."""
    project_id, model_id = request.project_id, request.model_id
    if request.time_range is not None:
        start, end = request.time_range
        value = encode_delete_range(
            project_id, model_id, deletion_id, start, end, request.update_metrics
        )
        return [(partition, value) for partition in range(partitions)]
    by_partition: dict[int, list[str]] = defaultdict(list)
    for event_id in dict.fromkeys(request.event_ids or ()):  # an id asked twice, once
        key = ingest_key(project_id, model_id, event_id)
        by_partition[partition_for(key, partitions)].append(event_id)
    return [
        (partition, encode_delete_ids(project_id, model_id, deletion_id, chunk,
                                      request.update_metrics))
        for partition, ids in sorted(by_partition.items())
        for chunk in id_chunks(ids, max_bytes)
    ]  # fmt: skip


def expected_commands(messages: list[tuple[int, bytes]]) -> dict[str, int]:
    return {str(p): n for p, n in sorted(Counter(p for p, _ in messages).items())}


def deletion_record(
    request: DeleteRequest, deletion_id: str, messages: list[tuple[int, bytes]], now: datetime
) -> dict[str, Any]:
    """The request as accepted, for the deletion-requests topic and the status endpoint."""
    return {
        "deletion_id": deletion_id,
        "project_id": request.project_id,
        "model_id": request.model_id,
        "model": model_key(request.project_id, request.model_id),
        "kind": request.kind,
        "update_metrics": request.update_metrics,
        "expected": expected_commands(messages),
        "created": now.astimezone(UTC).isoformat(timespec="milliseconds"),
        "events": len(request.event_ids or ()),
        "time_range": list(request.time_range) if request.time_range else None,
    }
