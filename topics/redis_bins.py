"""The metrics topic's bins as Redis holds them, for dashboards and the API.

One key per model and hour holds the bin's JSON, and a sorted set per model indexes its
hours, so a time range is one ZRANGEBYSCORE and one MGET; a marker per metrics partition
says how far Redis holds it (``RedisKeys``). The projection (``agents.serving``) writes
them and the API reads them, so they live here, below both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import redis

from driftline.state.bins import HOUR_MS
from driftline.topics.metric_bins import METRICS_VALUE
from driftline.topics.redis_keys import RedisKeys


class RedisBins:
    """The bins in Redis: written by the projection, read by the API."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.keys = RedisKeys(prefix)

    def markers(self, partitions: Iterable[int]) -> dict[int, int | None]:
        wanted = list(partitions)
        found = self.client.mget([self.keys.projected(p) for p in wanted])
        return {p: marker_offset(raw) for p, raw in zip(wanted, found, strict=True)}

    def write(self, pipe: Any, model: str, hour: int, value: bytes | None) -> None:
        if value is None:
            pipe.delete(self.keys.bin(model, hour))
            pipe.zrem(self.keys.bin_hours(model), hour)
        else:
            pipe.set(self.keys.bin(model, hour), value)
            pipe.zadd(self.keys.bin_hours(model), {str(hour): hour})

    def read_range(self, model: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """Bins whose hour starts in [start_ms, end_ms), oldest first.

        The first hour is ``start_ms`` rounded *up* to an hour: flooring it returned the
        hour before a start such as 10:00:00.001, whose bin starts before ``start``.
        """
        first, last = -(-start_ms // HOUR_MS), (end_ms - 1) // HOUR_MS
        if first > last:  # [start, end) lies inside one hour and holds no hour's start
            return []
        hours = self.client.zrangebyscore(self.keys.bin_hours(model), first, last)
        if not hours:
            return []
        keys = [self.keys.bin(model, int(hour)) for hour in hours]  # type: ignore[arg-type]
        # The client is made without decode_responses: values come as bytes.
        values = cast("list[bytes | None]", self.client.mget(keys))
        return [METRICS_VALUE.decode(raw) for raw in values if raw is not None]


def marker_offset(raw: Any) -> int | None:
    """The offset a partition's marker holds; None when Redis has none (wiped)."""
    return None if raw is None else int(raw)
