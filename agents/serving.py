"""Stage 3: the metrics topic projected into Redis, for dashboards and the API.

Kafka's compacted metrics topic is the truth; Redis is a view of it, rebuilt by
replaying the topic through ``topics.redis_bins`` (one key per model and hour, a sorted
set of hours per model; the API reads the same layout). Writes are idempotent (a replay
rewrites the same values in the same order).

Redis may go away, come back empty (FLUSHALL, a new server) or come back older (a
restart that lost its last second). So Redis itself records how far it holds each
metrics partition: its marker (``RedisKeys.projected``) is the next offset whose bins it
lacks, written in the same MULTI/EXEC as the bins. The projection engine
(``agents/projection.py``) resumes from those markers and waits out Redis's errors; this
module is the Redis side of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis
from confluent_kafka import Message

from driftline.agents.projection import Projection
from driftline.topics.metric_bins import emitted_at_ms
from driftline.topics.redis_bins import RedisBins, marker_offset


class RedisSink:
    """The bins in Redis, with each metrics partition's marker (``ProjectionSink``)."""

    dependency = "Redis"
    outage_errors: tuple[type[BaseException], ...] = (redis.RedisError,)

    def __init__(self, bins: RedisBins) -> None:
        self._bins = bins

    def markers(self, partitions: Sequence[int]) -> dict[int, int | None]:
        return self._bins.markers(partitions)

    def set_marker(self, partition: int, offset: int) -> None:
        self._bins.client.set(self._bins.keys.projected(partition), offset)

    def write(self, messages: Sequence[Message], ends: Mapping[int, int]) -> dict[int, int | None]:
        """One MULTI/EXEC: read the markers, write the bins, move the markers on."""
        partitions = sorted(ends)
        pipe = self._bins.client.pipeline(transaction=True)
        for partition in partitions:
            pipe.get(self._bins.keys.projected(partition))
        for message in messages:
            located = _bin_of(message.key())
            if located is not None:
                self._bins.write(pipe, *located, message.value())
        for partition in partitions:
            pipe.set(self._bins.keys.projected(partition), ends[partition])
        results = pipe.execute()
        return {
            partition: marker_offset(raw)
            for partition, raw in zip(partitions, results, strict=False)
        }


def redis_projection(
    bootstrap_servers: str, topic: str, group_id: str, bins: RedisBins, session_timeout_ms: int
) -> Projection:
    """The metrics topic into Redis: the ``serving`` stage."""
    return Projection(
        "serving", bootstrap_servers, topic, group_id, RedisSink(bins), session_timeout_ms,
        emitted_at_ms=emitted_at_ms, delay_label="redis",
    )  # fmt: skip


def _bin_of(key: bytes | None) -> tuple[str, int] | None:
    """(model, hour) of a metrics key ``project/model/<hour>``; None for a foreign key."""
    if key is None:
        return None
    model, _, hour = key.decode(errors="replace").rpartition("/")
    return (model, int(hour)) if model and hour.isdigit() else None
