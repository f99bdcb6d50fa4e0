"""Which worker holds which ingest partition, published in Redis by a heartbeat.

Any worker (or API process) can then answer a read for an event held elsewhere by
pointing at the owner, without a coordination protocol of its own.

One key per partition, ``<prefix>:owner:<partition>`` = the worker's URL, rewritten by
the holder every ``HEARTBEAT_S`` with an expiry of ``OWNER_TTL_S``: a wiped or replaced
Redis has its owners back within a heartbeat, and a dead worker's entries vanish by
themselves. Ownership is never written from the merge runner's rebalance callback: a
Redis outage must not stop a worker from taking its partitions and ingesting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import redis

from driftline.agents.outages import OutageLog

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
# A few heartbeats: one late heartbeat does not make a live worker's partitions vanish.
OWNER_TTL_S = 3 * HEARTBEAT_S


class PartitionOwners:
    """The owner keys: written by the heartbeat, read by the API and the worker views."""

    def __init__(self, client: redis.Redis, prefix: str, own_url: str) -> None:
        self._client = client
        self._prefix = prefix
        self.own_url = own_url

    def key(self, partition: int) -> str:
        return f"{self._prefix}:owner:{partition}"

    def publish(self, partitions: Iterable[int], ttl_s: float = OWNER_TTL_S) -> None:
        """This worker holds ``partitions`` (for the next ``ttl_s`` unless repeated)."""
        pipe = self._client.pipeline(transaction=False)
        for partition in partitions:
            pipe.set(self.key(partition), self.own_url, px=int(ttl_s * 1000))
        pipe.execute()

    def owner_of(self, partition: int) -> str | None:
        return self.owners_of([partition])[partition]

    def owners_of(self, partitions: Iterable[int]) -> dict[int, str | None]:
        """Each partition's owner URL (None: no live worker holds it); one MGET."""
        wanted = list(partitions)
        if not wanted:
            return {}
        found = self._client.mget([self.key(p) for p in wanted])
        return {p: _text(raw) for p, raw in zip(wanted, found, strict=True)}


class OwnershipHeartbeat:
    """A runner thread of the worker that keeps its partitions' owner keys alive.

    ``held`` says which ingest partitions this worker holds now (the merge runner's
    stores); ``wake`` (called on every assignment change) makes the next beat come at
    once instead of at the next interval.
    """

    name = "ownership"

    def __init__(
        self,
        owners: PartitionOwners,
        held: Callable[[], Iterable[int]],
        interval_s: float = HEARTBEAT_S,
    ) -> None:
        self._owners = owners
        self._held = held
        self._interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._outage = OutageLog(
            log, self.name, "Redis", "the API cannot find this worker's partitions meanwhile"
        )

    def run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            wait = self.beat()
            self._wake.wait(wait)

    def beat(self) -> float:
        """Publish once; returns how long to wait before the next beat."""
        try:
            self._owners.publish(sorted(self._held()))
        except redis.RedisError as error:
            return min(self._interval_s, self._outage.failed(error))
        self._outage.succeeded()
        return self._interval_s

    def wake(self, partitions: object = None) -> None:
        """Beat now (an assignment changed); usable as the runner's assignment callback."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()


def _text(raw: object) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)
