"""Which worker holds which ingest partition: the owner keys in Redis.

One key per ingest partition (``RedisKeys.owner``) holds the URL of the worker that holds
it, kept alive by that worker's heartbeat (``agents.ownership``) and read by the API and
the other workers to route a read to the partition's owner. It lives here, below both.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from driftline.topics.redis_keys import RedisKeys


class PartitionOwners:
    """The owner keys: written by the heartbeat, read by the API and the worker views."""

    def __init__(self, client: redis.Redis, prefix: str, own_url: str) -> None:
        self._client = client
        self._keys = RedisKeys(prefix)
        self.own_url = own_url

    def publish(self, partitions: Iterable[int], ttl_s: float) -> None:
        """This worker holds ``partitions`` (for the next ``ttl_s`` unless repeated)."""
        pipe = self._client.pipeline(transaction=False)
        for partition in partitions:
            pipe.set(self._keys.owner(partition), self.own_url, px=int(ttl_s * 1000))
        pipe.execute()

    def owner_of(self, partition: int) -> str | None:
        return self.owners_of([partition])[partition]

    def owners_of(self, partitions: Iterable[int]) -> dict[int, str | None]:
        """Each partition's owner URL (None: no live worker holds it); one MGET."""
        wanted = list(partitions)
        if not wanted:
            return {}
        found = self._client.mget([self._keys.owner(p) for p in wanted])
        return {p: _text(raw) for p, raw in zip(wanted, found, strict=True)}


def _text(raw: object) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)
