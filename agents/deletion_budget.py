"""The daily cap on deleted events per model, shared by every partition through Redis.

Each partition keeps the count of events it deleted per model and UTC day in its own
store (exact: written in the same atomic batch as the deletions), and publishes that
count, absolute, as its field of one Redis hash per model and day. The cap compares the
sum of the fields with the limit. Since each field is set, never incremented, Redis
holds nothing that cannot be rebuilt: a replayed step sets the same value again, and
after Redis is wiped every partition that deleted that day sets its field again on its
next tick. While Redis cannot be reached a step waits rather than deleting past a cap it
cannot check (``grant`` answers None).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import redis

from driftline.topics.outages import OutageLog
from driftline.topics.redis_keys import RedisKeys

log = logging.getLogger(__name__)

# A day's hash outlives its day by one, so a step just before midnight still finds it.
_KEEP_S = 2 * 24 * 3600

# Sets this partition's field to what it already deleted plus what it may delete now,
# within the cap left by the other partitions' fields; answers how many it may delete.
_GRANT = """
local mine, already, wanted, cap = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local others = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if fields[i] ~= mine then others = others + tonumber(fields[i + 1]) end
end
local allowed = math.max(0, math.min(wanted, cap - others - already))
redis.call('HSET', KEYS[1], mine, already + allowed)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return allowed
"""


class RedisDeletionBudget:
    def __init__(self, client: redis.Redis, prefix: str, daily_cap: int) -> None:
        self._client = client
        self._keys = RedisKeys(prefix)
        self._cap = daily_cap
        self._grant = client.register_script(_GRANT)
        self._outage = OutageLog(
            log, "deletion daily cap", "Redis", "time-range deletion steps wait for it"
        )

    def grant(self, model: str, day: int, partition: int, already: int, wanted: int) -> int | None:
        """How many of ``wanted`` events the partition may delete now, having deleted
        ``already`` that day; None if Redis does not answer."""
        try:
            allowed = self._grant(
                keys=[self._keys.deleted_events(model, day)],
                args=[partition, already, wanted, self._cap, _KEEP_S],
            )
        except redis.RedisError as error:
            self._outage.failed(error)
            return None
        self._outage.succeeded()
        return int(allowed)

    def publish(self, partition: int, day: int, deleted: Mapping[str, int]) -> None:
        """Set the partition's fields for ``day`` (model -> events deleted that day)."""
        if not deleted:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for model, count in deleted.items():
                pipe.hset(self._keys.deleted_events(model, day), str(partition), count)
                pipe.expire(self._keys.deleted_events(model, day), _KEEP_S)
            pipe.execute()
        except redis.RedisError as error:
            self._outage.failed(error)
            return
        self._outage.succeeded()
