"""A delete request as messages on the ingest topic, and its record in Redis.

By ids: each id goes to the partition that holds its event (the key ``project/model/id``
hashed as Kafka does), in chunks that fit one message. By time range: one command to
every partition, each of which finds its own events through its hour index. Each
partition counts the commands it applied, so the status knows how many to expect.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import orjson
import redis.asyncio as aioredis

from api.requests import DeleteRequest
from topics.messages import encode_delete_ids, encode_delete_range, id_chunks, ingest_key
from topics.partitioning import partition_for

# How long a deletion's status can be asked for.
KEEP_S = 30 * 24 * 3600


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


class DeletionLog:
    """``<prefix>:deletion:<id>``: what was asked, for the status endpoint."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def _key(self, deletion_id: str) -> str:
        return f"{self._prefix}:deletion:{deletion_id}"

    async def put(self, deletion_id: str, record: dict[str, Any]) -> None:
        await self._client.set(self._key(deletion_id), orjson.dumps(record), ex=KEEP_S)

    async def get(self, deletion_id: str) -> dict[str, Any] | None:
        raw = await self._client.get(self._key(deletion_id))
        if raw is None:
            return None
        record: dict[str, Any] = orjson.loads(raw)
        return record

    async def forget(self, deletion_id: str) -> None:
        await self._client.delete(self._key(deletion_id))
