"""The daily cap on deleted events per model, kept in Redis for every partition to share.

Each partition takes a step's worth from the model's allowance before the step and gives
back what it did not use. A step lost to a crash keeps what it took (the cap errs on the
side of deleting less that day, never more).
"""

from __future__ import annotations

import redis

# A day's counter outlives its day by one, so a step just before midnight still finds it.
_KEEP_S = 2 * 24 * 3600


class RedisDeletionBudget:
    def __init__(self, client: redis.Redis, prefix: str, daily_cap: int) -> None:
        self._client = client
        self._prefix = prefix
        self._cap = daily_cap

    def _key(self, model: str, day: int) -> str:
        return f"{self._prefix}:deleted-events:{model}:{day}"

    def grant(self, model: str, day: int, wanted: int) -> int:
        key = self._key(model, day)
        pipe = self._client.pipeline()
        pipe.incrby(key, wanted)
        pipe.expire(key, _KEEP_S)
        used = int(pipe.execute()[0])
        excess = min(wanted, max(0, used - self._cap))
        if excess:
            self._client.decrby(key, excess)
        return wanted - excess

    def refund(self, model: str, day: int, unused: int) -> None:
        if unused > 0:
            self._client.decrby(self._key(model, day), unused)
