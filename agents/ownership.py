"""The heartbeat that publishes which worker holds which ingest partition, in Redis.

Any worker (or API process) can then answer a read for an event held elsewhere by
pointing at the owner, without a coordination protocol of its own (the owner keys and
their readers: ``topics.ownership``).

The holder rewrites its partitions' keys every ``HEARTBEAT_S`` with an expiry of
``OWNER_TTL_S``: a wiped or replaced Redis has its owners back within a heartbeat, and a
dead worker's entries vanish by themselves. Ownership is never written from the merge
runner's rebalance callback: a Redis outage must not stop a worker from taking its
partitions and ingesting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import redis

from driftline.topics.outages import OutageLog
from driftline.topics.ownership import PartitionOwners

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0
# A few heartbeats: one late heartbeat does not make a live worker's partitions vanish.
OWNER_TTL_S = 3 * HEARTBEAT_S


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
            self._owners.publish(sorted(self._held()), OWNER_TTL_S)
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
