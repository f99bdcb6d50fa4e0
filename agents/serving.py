"""Stage 3: the metrics topic projected into Redis, for dashboards and the API.

Kafka's compacted metrics topic is the truth; Redis is a view of it, rebuilt by
replaying the topic. One key per model and hour holds the bin's JSON, and a sorted set
per model indexes its hours, so a time range is one ZRANGEBYSCORE and one MGET.
Writes are idempotent (a replay rewrites the same values in the same order).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import redis
from confluent_kafka import Consumer, KafkaException

from state import exact_json
from state.bins import HOUR_MS

log = logging.getLogger(__name__)


class RedisBins:
    """The Redis layout of the bins: the one place that names its keys."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self._prefix = prefix

    def bin_key(self, model: str, hour: int) -> str:
        return f"{self._prefix}:bin:{model}:{hour}"

    def index_key(self, model: str) -> str:
        return f"{self._prefix}:bins:{model}"

    def write(self, pipe: Any, model: str, hour: int, value: bytes | None) -> None:
        if value is None:
            pipe.delete(self.bin_key(model, hour))
            pipe.zrem(self.index_key(model), hour)
        else:
            pipe.set(self.bin_key(model, hour), value)
            pipe.zadd(self.index_key(model), {str(hour): hour})

    def read_range(self, model: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """Bins whose hour starts in [start_ms, end_ms), oldest first."""
        first, last = start_ms // HOUR_MS, (end_ms - 1) // HOUR_MS
        hours = self.client.zrangebyscore(self.index_key(model), first, last)
        if not hours:
            return []
        keys = [self.bin_key(model, int(hour)) for hour in hours]  # type: ignore[arg-type]
        return [exact_json.loads(raw) for raw in self.client.mget(keys) if raw is not None]


class RedisProjection:
    """Consumes the metrics topic and mirrors it into Redis; commits after each write."""

    def __init__(
        self,
        name: str,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        bins: RedisBins,
        session_timeout_ms: int,
    ) -> None:
        self.name = name
        self._topic = topic
        self._bins = bins
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 10,
                # librdkafka's default (45 s) would leave a dead worker's partitions
                # unserved that long after a crash.
                "session.timeout.ms": session_timeout_ms,
                "heartbeat.interval.ms": max(500, session_timeout_ms // 5),
            }
        )
        self._stop = threading.Event()

    def run(self) -> None:
        self._consumer.subscribe([self._topic])
        try:
            while not self._stop.is_set():
                # The first message ends the wait, and the rest already fetched join it:
                # consume(1000, 0.05) would hold every bin until its 50 ms were over.
                messages = self._consumer.consume(1, 0.05)
                if messages:
                    messages.extend(self._consumer.consume(999, 0))
                    self._project(messages)
        finally:
            try:
                self._consumer.close()
            except KafkaException as error:
                log.warning("%s: closing consumer: %s", self.name, error)

    def stop(self) -> None:
        self._stop.set()

    def _project(self, messages: list[Any]) -> None:
        pipe = self._bins.client.pipeline(transaction=False)
        for message in messages:
            if message.error() is not None or message.key() is None:
                continue
            model, hour = message.key().decode().rsplit("/", 1)
            self._bins.write(pipe, model, int(hour), message.value())
        pipe.execute()
        self._consumer.commit(asynchronous=True)
