"""Fixtures that run the real parts: an Apache Kafka broker, a Redis server, worker processes.

Which broker: ``KAFKA_BOOTSTRAP_SERVERS`` if set (an already running broker); else a
testcontainers Kafka where a Docker engine answers; else the embedded broker the
project starts from Maven Central jars with the machine's Java. Redis likewise:
``REDIS_URL`` if it answers, else Debian's redis-server on a free loopback port.
PostgreSQL likewise: ``DRIFTLINE_POSTGRES_URL`` if it answers, else Debian's server on a
free loopback port. Every test gets its own topic prefix (and with it its own PostgreSQL
schema), consumer group and state directory.

Loaded by ``tests/conftest.py`` through ``pytest_plugins``: tests name these fixtures as
parameters and never import this module; what they call is in ``tests/support``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from driftline.settings import Settings
from driftline.stack import LocalKafka, LocalPostgres, LocalRedis
from driftline.stack.kafka import free_broker_port, free_port
from driftline.stack.postgres import postgres_answers
from driftline.stack.redis import redis_answers
from driftline.stack.worker import WorkerProcess
from tests.support.postgres import drop_schema
from tests.support.topics import drop_topics

_SESSION_SETTINGS = Settings.from_env()


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One broker for the whole session: starting Kafka costs seconds, topics cost nothing."""
    if _SESSION_SETTINGS.kafka_bootstrap_servers is not None:
        yield _SESSION_SETTINGS.kafka_bootstrap_servers
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    broker = started_broker(
        lambda attempt: tmp_path_factory.mktemp(f"kafka-{attempt}"),
        # Small segments so that compaction can be observed within a test.
        extra_config={"log.cleaner.backoff.ms": "1000"},
    )
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


def started_broker(
    data_dir: Callable[[int], Path], extra_config: dict[str, str] | None = None
) -> LocalKafka:
    """An embedded broker on free ports, started. A port found free can be taken before the
    broker binds it (a client's socket): then it starts again on others, a few times."""
    for attempt in range(3):
        broker = LocalKafka(
            home=_SESSION_SETTINGS.home,
            data_dir=data_dir(attempt),
            port=free_broker_port(),
            version=_SESSION_SETTINGS.kafka_version,
            extra_config=extra_config or {},
        )
        try:
            broker.start()
        except RuntimeError as error:
            if "Address already in use" not in str(error) or attempt == 2:
                raise
            continue
        return broker
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Redis for the session; tests keep apart by their topic prefix in every key."""
    configured = _SESSION_SETTINGS.redis_url
    if configured is not None and redis_answers(configured):
        yield configured
        return
    server = LocalRedis(data_dir=tmp_path_factory.mktemp("redis"), port=free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One PostgreSQL for the session; tests keep apart by their topic prefix's schema."""
    configured = _SESSION_SETTINGS.postgres_url
    if configured is not None and postgres_answers(configured):
        yield configured
        return
    server = LocalPostgres(data_dir=tmp_path_factory.mktemp("postgres"), port=free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[LocalPostgres]:
    """A PostgreSQL server of the test's own (not started: the test decides when), so that
    it can stop, kill or restart it without disturbing the other tests."""
    server = LocalPostgres(data_dir=tmp_path / "postgres", port=free_port())
    yield server
    server.stop()


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker this test alone uses, so that it can stop it (an outage) and start it again
    on the same port and data. Only the embedded broker can be stopped so."""
    if _SESSION_SETTINGS.kafka_bootstrap_servers is not None or _docker_answers():
        pytest.skip("outage tests stop and restart the embedded broker")
    broker = started_broker(lambda attempt: tmp_path / f"own-kafka-{attempt}")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A Redis server of the test's own (not started: the test decides when), so that it
    can kill, wipe or restart it without disturbing the other tests. Tests name it first,
    so that it stops after their worker and API processes."""
    server = LocalRedis(data_dir=tmp_path / "redis", port=free_port())
    yield server
    server.stop()


@pytest.fixture
def settings(
    kafka_bootstrap: str, redis_url: str, postgres_url: str, tmp_path: Path
) -> Iterator[Settings]:
    """A test's own topics and PostgreSQL schema (a fresh prefix, both dropped at the end),
    data dir and worker port."""
    chosen = _SESSION_SETTINGS.with_overrides(
        kafka_bootstrap_servers=kafka_bootstrap,
        redis_url=redis_url,
        postgres_url=postgres_url,
        topic_prefix=f"t{uuid.uuid4().hex[:12]}",
        ingest_partitions=4,
        worker_port=free_port(),
        data_dir=tmp_path / "worker",
        session_timeout_ms=6_000,
        batch_within_s=0.02,
    )
    yield chosen
    drop_topics(kafka_bootstrap, chosen.topic_prefix)
    drop_schema(postgres_url, chosen.topic_prefix)


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Real worker processes (a test may SIGKILL one); all are stopped at the end."""
    started: list[WorkerProcess] = []

    def start(worker_settings: Settings | None = None) -> WorkerProcess:
        worker = WorkerProcess(worker_settings or settings, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def start_api(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Real `driftline api` processes, each on a free port: rate limits and deletions are
    shown across processes sharing one Redis. Tokens live in the test's own file."""
    from driftline.stack.api import ApiProcess

    started: list[ApiProcess] = []

    def start(api_settings: Settings | None = None) -> ApiProcess:
        chosen = api_settings or settings
        if chosen.api_tokens_file == _SESSION_SETTINGS.api_tokens_file:
            chosen = chosen.with_overrides(api_tokens_file=tmp_path / "api-tokens.json")
        chosen = chosen.with_overrides(api_port=free_port(), api_metrics_port=free_port())
        api = ApiProcess(chosen, tmp_path / f"api-{len(started)}.log")
        started.append(api)
        return api.start()

    yield start
    for api in started:
        api.stop()


@pytest.fixture
def api_settings(settings: Settings, start_api: Callable[..., Any]) -> Settings:
    """``settings`` pointed at a running API with a token for every project: the client
    reads events and bins through the API only (the worker's port is the API's)."""
    # Imported here, as ApiProcess above: unit test sessions do not load the API's modules.
    from tests.support.api import reading_through_api

    return reading_through_api(settings, start_api)


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[[list[str]], Any]]:
    """Real Prometheus servers (Debian's binary) scraping the given ``host:port`` targets
    every second; each is stopped at the end."""
    from driftline.stack.prometheus import LocalPrometheus

    started: list[LocalPrometheus] = []

    def start(targets: list[str]) -> LocalPrometheus:
        server = LocalPrometheus(tmp_path / f"prometheus-{len(started)}", targets)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
