"""The embedded default: a local Kafka broker and Redis, unless the environment names others."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from driftline.settings import Settings
from driftline.stack.kafka import LocalKafka, kafka_libs
from driftline.stack.packages import WALKTHROUGH_TOOLS, ensure_commands
from driftline.stack.redis import LocalRedis, ensure_redis_server_binary, redis_answers

__all__ = ["Endpoints", "LocalKafka", "LocalRedis", "down", "prepare", "up"]


@dataclass(frozen=True)
class Endpoints:
    bootstrap_servers: str
    redis_url: str


def prepare(settings: Settings) -> None:
    """Install what the embedded stack needs (broker jars, redis-server) without starting it,
    and kcat and jq, which the README's walk-through (and the test that runs it) uses."""
    ensure_commands(WALKTHROUGH_TOOLS)
    if settings.kafka_bootstrap_servers is None:
        kafka_libs(settings.home, settings.kafka_version)
    if settings.redis_url is None or not redis_answers(settings.redis_url):
        ensure_redis_server_binary()


def local_kafka(settings: Settings) -> LocalKafka:
    return LocalKafka(
        home=settings.home,
        data_dir=settings.home / "kafka-data",
        port=settings.local_kafka_port,
        version=settings.kafka_version,
    )


def local_redis(settings: Settings) -> LocalRedis:
    """The server to start when none answers: on REDIS_URL's port if that names loopback."""
    port = settings.local_redis_port
    if settings.redis_url is not None:
        parsed = urlparse(settings.redis_url)
        if parsed.hostname in {"127.0.0.1", "localhost"} and parsed.port is not None:
            port = parsed.port
    return LocalRedis(data_dir=settings.home / f"redis-data-{port}", port=port)


def up(settings: Settings) -> Endpoints:
    if settings.kafka_bootstrap_servers is None:
        local_kafka(settings).start()
    if settings.redis_url is not None and redis_answers(settings.redis_url):
        return Endpoints(settings.bootstrap_servers, settings.redis_url)
    redis_server = local_redis(settings)
    redis_server.start()
    return Endpoints(settings.bootstrap_servers, redis_server.url)


def down(settings: Settings) -> None:
    if settings.kafka_bootstrap_servers is None:
        local_kafka(settings).stop()
    local_redis(settings).stop()
