"""Fixtures that run the real parts: an Apache Kafka broker, a Redis server, worker processes.

Which broker: ``KAFKA_BOOTSTRAP_SERVERS`` if set (an already running broker); else a
testcontainers Kafka where a Docker engine answers; else the embedded broker the
project starts from Maven Central jars with the machine's Java. Redis likewise:
``REDIS_URL`` if it answers, else Debian's redis-server on a free loopback port.
Every test gets its own topic prefix, consumer group and state directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from driftline.settings import Settings
from driftline.stack import LocalKafka, LocalRedis
from driftline.stack.kafka import free_port
from driftline.stack.redis import redis_answers
from driftline.stack.waiting import wait_until

pytestmark = pytest.mark.integration

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
    broker = LocalKafka(
        home=_SESSION_SETTINGS.home,
        data_dir=tmp_path_factory.mktemp("kafka"),
        port=free_port(),
        version=_SESSION_SETTINGS.kafka_version,
        # Small segments so that compaction can be observed within a test.
        extra_config={"log.cleaner.backoff.ms": "1000"},
    )
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


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


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> Settings:
    return _SESSION_SETTINGS.with_overrides(
        kafka_bootstrap_servers=kafka_bootstrap,
        redis_url=redis_url,
        topic_prefix=f"t{uuid.uuid4().hex[:12]}",
        ingest_partitions=4,
        worker_port=free_port(),
        data_dir=tmp_path / "worker",
        session_timeout_ms=6_000,
        batch_within_s=0.02,
    )


class WorkerProcess:
    """`driftline worker` as a real OS process, so that a test can SIGKILL it."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.worker_host}:{self.settings.worker_port}"

    def start(self, timeout_s: float = 90) -> WorkerProcess:
        env = {**os.environ, **self.settings.to_env()}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "driftline.cli", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._ready, timeout_s=timeout_s, what=f"worker ready ({self.log_path})")
        return self

    def _ready(self) -> bool:
        import urllib.error
        import urllib.request

        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"worker exited: {self.log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit, no flush."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[type[WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(worker_settings: Settings | None = None) -> WorkerProcess:
        worker = WorkerProcess(worker_settings or settings, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker.start()

    yield start  # type: ignore[misc]
    for worker in started:
        worker.stop()


def wait_for_lag_zero(settings: Settings, timeout_s: float = 120) -> None:
    """Until the merge agent's committed offsets reach the ingest topic's end."""
    from confluent_kafka import Consumer, TopicPartition

    from topics.registry import Topics

    topics = Topics.for_settings(settings)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"{topics.app_id}-merge",
            "enable.auto.commit": False,
        }
    )
    partitions = [TopicPartition(topics.ingest.name, p) for p in range(settings.ingest_partitions)]

    def caught_up() -> bool:
        committed = consumer.committed(partitions, timeout=10)
        for tp in committed:
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            if high > 0 and tp.offset < high:
                return False
        return True

    try:
        wait_until(caught_up, timeout_s=timeout_s, what="merge agent to catch up", interval_s=0.2)
    finally:
        consumer.close()
