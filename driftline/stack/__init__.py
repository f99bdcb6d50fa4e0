"""The embedded default: a local Kafka broker, Redis and PostgreSQL, unless the environment
names others."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from driftline.settings import Settings
from driftline.stack.kafka import LocalKafka, kafka_libs
from driftline.stack.packages import PROMETHEUS_SERVER, WALKTHROUGH_TOOLS, ensure_commands
from driftline.stack.postgres import LocalPostgres, ensure_postgres_binaries, postgres_answers
from driftline.stack.redis import LocalRedis, ensure_redis_server_binary, redis_answers

__all__ = ["Endpoints", "LocalKafka", "LocalPostgres", "LocalRedis", "down", "prepare", "up"]


@dataclass(frozen=True)
class Endpoints:
    bootstrap_servers: str
    redis_url: str
    postgres_url: str


def prepare(settings: Settings) -> None:
    """Install what the embedded stack needs (broker jars, redis-server, PostgreSQL) without
    starting it; kcat and jq, which the README's walk-through (and the test that runs it)
    uses; and the Prometheus server the tests scrape the processes with."""
    ensure_commands({**WALKTHROUGH_TOOLS, **PROMETHEUS_SERVER})
    if settings.kafka_bootstrap_servers is None:
        kafka_libs(settings.home, settings.kafka_version)
    if settings.redis_url is None or not redis_answers(settings.redis_url):
        ensure_redis_server_binary()
    if settings.postgres_url is None or not postgres_answers(settings.postgres_url):
        ensure_postgres_binaries()


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


def local_postgres(settings: Settings) -> LocalPostgres:
    port = settings.local_postgres_port
    return LocalPostgres(data_dir=settings.home / f"postgres-data-{port}", port=port)


def up(settings: Settings) -> Endpoints:
    if settings.kafka_bootstrap_servers is None:
        local_kafka(settings).start()
    return Endpoints(settings.bootstrap_servers, _up_redis(settings), _up_postgres(settings))


def _up_redis(settings: Settings) -> str:
    return _answering_or_started(settings.redis_url, redis_answers, local_redis(settings))


def _up_postgres(settings: Settings) -> str:
    return _answering_or_started(settings.postgres_url, postgres_answers, local_postgres(settings))


def _answering_or_started(
    configured: str | None, answers: Callable[[str], bool], local: LocalRedis | LocalPostgres
) -> str:
    """The configured server's URL if it answers, else the local one's, started."""
    if configured is not None and answers(configured):
        return configured
    local.start()
    return local.url


def down(settings: Settings) -> None:
    if settings.kafka_bootstrap_servers is None:
        local_kafka(settings).stop()
    local_redis(settings).stop()
    local_postgres(settings).stop()
