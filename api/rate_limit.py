"""Delete requests per model per UTC day, counted in Redis so that every API process and
every restart sees the same count.

One key per model and day, ``INCR`` then ``EXPIREAT`` a day after the window ends (a
process whose clock is a little behind still finds the key). The window is the UTC day:
``X-RateLimit-Reset`` is the next midnight UTC.

Redis holds nothing that Kafka cannot rebuild: every accepted request is also in the
deletion-requests topic, so a missing key (Redis wiped or replaced) is first set (``SET
NX``, so that two processes rebuilding at once agree) to the number of the model's
requests of that day there, then incremented. ``peek`` falls back on that number while
Redis is down; ``take`` needs Redis (the API answers 503 without it).

Only requests that pass validation and name a registered model are counted: a 400 or a
404 costs nothing, so a client that fixes its request is not punished for the mistake.
A request refused with 429 does not raise the count either (it is taken back).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
import redis.asyncio as aioredis

from driftline.topics.redis_keys import RedisKeys

DAY_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class Window:
    limit: int
    used: int
    reset_s: int  # UTC epoch seconds of the next midnight
    now_s: float

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    @property
    def exceeded(self) -> bool:
        return self.used > self.limit

    def headers(self) -> dict[str, str]:
        """The three headers every delete response carries (429 adds Retry-After)."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_s),
        }
        if self.exceeded:
            headers["Retry-After"] = str(max(1, math.ceil(self.reset_s - self.now_s)))
        return headers


def day_window(now: datetime) -> tuple[int, int]:
    """(the UTC day number, epoch seconds of its end)."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = midnight + timedelta(days=1)
    return int(midnight.timestamp()) // DAY_S, int(end.timestamp())


# How many requests a model had accepted on a UTC day (epoch days), as Kafka knows it:
# ``topics.deletion_requests.DeletionRequests.count`` (blocking; run in a thread).
AcceptedOn = Callable[[str, int], int]


class DeleteRateLimit:
    def __init__(
        self, client: aioredis.Redis, prefix: str, per_day: int, accepted_on: AcceptedOn
    ) -> None:
        self._client = client
        self._keys = RedisKeys(prefix)
        self.per_day = per_day
        self._accepted_on = accepted_on

    async def peek(self, model: str | None, now: datetime | None = None) -> Window:
        """The window as it stands, without counting a request (for 400/404 answers)."""
        now = now or datetime.now(UTC)
        day, reset = day_window(now)
        used = 0
        if model is not None:
            try:
                raw = await self._client.get(self._keys.delete_requests(model, day))
            except redis.RedisError:
                raw = None  # Kafka knows the count as well
            if raw is None:
                used = await asyncio.to_thread(self._accepted_on, model, day)
            else:
                used = int(raw)
            used = min(used, self.per_day)
        return Window(self.per_day, used, reset, now.timestamp())

    async def take(self, model: str, now: datetime | None = None) -> Window:
        """Count one request; ``exceeded`` says it is past the limit (and was not counted)."""
        now = now or datetime.now(UTC)
        day, reset = day_window(now)
        key = self._keys.delete_requests(model, day)
        if not await self._client.exists(key):
            accepted = await asyncio.to_thread(self._accepted_on, model, day)
            await self._client.set(key, accepted, nx=True, exat=reset + DAY_S)
        pipe = self._client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expireat(key, reset + DAY_S)
        used = int((await pipe.execute())[0])
        if used > self.per_day:
            # Taken back so that the count stays the number of accepted requests.
            await self._client.decr(key)
        return Window(self.per_day, used, reset, now.timestamp())

    async def give_back(self, model: str, now: datetime | None = None) -> None:
        """An accepted request that could not be sent (the broker refused it)."""
        day, _ = day_window(now or datetime.now(UTC))
        await self._client.decr(self._keys.delete_requests(model, day))
