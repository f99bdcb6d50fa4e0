"""Which worker holds which partition, published in Redis.

Any worker (or API process) can then answer a read for an event held elsewhere by
pointing at the owner, without a coordination protocol of its own. A new owner
overwrites the entry when the partition moves.
"""

from __future__ import annotations

import redis


class PartitionOwners:
    def __init__(self, client: redis.Redis, prefix: str, own_url: str) -> None:
        self._client = client
        self._key = f"{prefix}:partition-owners"
        self.own_url = own_url

    def publish(self, partitions: set[int]) -> None:
        if partitions:
            self._client.hset(self._key, mapping={str(p): self.own_url for p in partitions})

    def owner_of(self, partition: int) -> str | None:
        raw = self._client.hget(self._key, str(partition))
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)
