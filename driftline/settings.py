"""The one place that reads the environment.

Every knob of Driftline is a field here, read once by ``Settings.from_env()`` and passed
down explicitly; nothing else touches ``os.environ``. Defaults describe the embedded
local stack (a single-node Kafka on 127.0.0.1 and a loopback Redis) so that a fresh
checkout runs without any configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path


def _default_home() -> Path:
    return Path.home() / ".cache" / "driftline"


@dataclass(frozen=True, slots=True)
class Settings:
    # Where to find Kafka. None means "the embedded broker started by `driftline stack up`".
    kafka_bootstrap_servers: str | None = None
    # Where to find Redis. None means "the loopback redis-server the stack starts".
    redis_url: str | None = None
    # Prefix of every topic and of the Faust app id, so tests and tenants never share topics.
    topic_prefix: str = "driftline"
    ingest_partitions: int = 8
    # How long the raw ingest topic keeps messages: the one place erased events may linger.
    ingest_retention_ms: int = 7 * 24 * 3600 * 1000
    # Larger events are dead-lettered rather than stored.
    max_event_bytes: int = 256 * 1024
    # Merge agent batching: up to this many messages, or whatever arrived within this time.
    batch_max_messages: int = 10_000
    batch_within_s: float = 0.05
    # Partitions of the bin topics (partials, metrics), keyed by model and hour.
    bins_partitions: int = 4
    # A bin is re-emitted at most once per this interval, however often it changes.
    emit_interval_s: float = 0.5
    # An update that arrives before its insert waits this long / this many per event.
    parked_update_timeout_s: float = 600.0
    parked_updates_per_event: int = 100
    # How soon the group notices a dead worker and moves its partitions.
    session_timeout_ms: int = 10_000
    # Worker HTTP server: the API's reads (with the internal secret), health, readiness.
    worker_host: str = "127.0.0.1"
    worker_port: int = 6066
    # How the API and other workers reach this worker, when not at host:port (containers).
    worker_advertised_url: str | None = None
    # The shared secret the API sends to the workers' internal routes. None: a random one
    # kept in ``<home>/internal-secret`` (0600), so a local stack needs no configuration
    # (``driftline.internal_secret``).
    internal_secret: str | None = None
    # Embedded stack.
    home: Path = field(default_factory=_default_home)
    kafka_version: str = "4.1.1"
    local_kafka_port: int = 19092
    local_redis_port: int = 16379
    # RocksDB table data of the worker.
    data_dir: Path = field(default_factory=lambda: _default_home() / "worker-data")
    # The memory all RocksDB stores of a worker share: memtables (flushed to disk beyond
    # this budget) are charged to the block cache, which holds them, the index and filter
    # blocks and the cached data blocks.
    store_write_buffer_mb: int = 64
    store_block_cache_mb: int = 128
    # How often the worker hands freed heap back to the system (glibc); 0: never.
    heap_trim_interval_s: float = 10.0
    # glibc malloc arenas of the worker process (each keeps its own free memory);
    # 0: glibc's default, 8 per core.
    malloc_arenas: int = 2
    # Compacted topics roll a segment at least this often and compact it within this lag,
    # and keep a tombstone this long: together they bound how long a deleted event's
    # last value (then its tombstone) stays readable in a changelog.
    compaction_lag_ms: int = 3600 * 1000
    tombstone_retention_ms: int = 3600 * 1000
    # Time-range deletions: events removed per step (ingestion goes on between steps),
    # and at most this many events deleted per model per UTC day.
    event_deletion_batch_size: int = 100_000
    deletion_daily_cap: int = 100_000_000
    # Delete requests accepted per model per UTC day (kept in Redis, across API processes).
    delete_requests_per_day: int = 30
    # The REST API process.
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    # Bearer tokens: SHA-256 hashes with their projects, written by `driftline api token`.
    api_tokens_file: Path = field(default_factory=lambda: _default_home() / "api-tokens.json")
    api_max_body_bytes: int = 16 * 1024 * 1024
    # A client has this long to send a request's line and headers (408, then closed; an
    # idle keep-alive connection is closed after as long), and this long for its body.
    api_header_timeout_s: float = 10.0
    api_body_timeout_s: float = 30.0
    # The API's Redis calls give up after this long (one retry on a new connection when a
    # pooled one is dead, e.g. after a Redis restart); the route then answers 503.
    api_redis_timeout_s: float = 2.0
    # What clients (the Python client, the CLI) use to reach the API.
    api_url: str | None = None
    api_token: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaults = cls()
        home = Path(env.get("DRIFTLINE_HOME", str(defaults.home)))
        return cls(
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            redis_url=env.get("REDIS_URL") or None,
            topic_prefix=env.get("DRIFTLINE_TOPIC_PREFIX", defaults.topic_prefix),
            ingest_partitions=_int(env, "DRIFTLINE_INGEST_PARTITIONS", defaults.ingest_partitions),
            ingest_retention_ms=_int(
                env, "DRIFTLINE_INGEST_RETENTION_MS", defaults.ingest_retention_ms
            ),
            max_event_bytes=_int(env, "DRIFTLINE_MAX_EVENT_BYTES", defaults.max_event_bytes),
            bins_partitions=_int(env, "DRIFTLINE_BINS_PARTITIONS", defaults.bins_partitions),
            emit_interval_s=_float(env, "DRIFTLINE_EMIT_INTERVAL_S", defaults.emit_interval_s),
            batch_max_messages=_int(
                env, "DRIFTLINE_BATCH_MAX_MESSAGES", defaults.batch_max_messages
            ),
            batch_within_s=_float(env, "DRIFTLINE_BATCH_WITHIN_S", defaults.batch_within_s),
            parked_update_timeout_s=_float(
                env, "DRIFTLINE_PARKED_UPDATE_TIMEOUT_S", defaults.parked_update_timeout_s
            ),
            parked_updates_per_event=_int(
                env, "DRIFTLINE_PARKED_UPDATES_PER_EVENT", defaults.parked_updates_per_event
            ),
            session_timeout_ms=_int(
                env, "DRIFTLINE_SESSION_TIMEOUT_MS", defaults.session_timeout_ms
            ),
            worker_host=env.get("DRIFTLINE_WORKER_HOST", defaults.worker_host),
            worker_port=_int(env, "DRIFTLINE_WORKER_PORT", defaults.worker_port),
            worker_advertised_url=env.get("DRIFTLINE_WORKER_ADVERTISED_URL") or None,
            internal_secret=env.get("DRIFTLINE_INTERNAL_SECRET") or None,
            home=home,
            kafka_version=env.get("DRIFTLINE_KAFKA_VERSION", defaults.kafka_version),
            local_kafka_port=_int(env, "DRIFTLINE_LOCAL_KAFKA_PORT", defaults.local_kafka_port),
            local_redis_port=_int(env, "DRIFTLINE_LOCAL_REDIS_PORT", defaults.local_redis_port),
            data_dir=Path(env.get("DRIFTLINE_DATA_DIR", str(home / "worker-data"))),
            store_write_buffer_mb=_int(
                env, "DRIFTLINE_STORE_WRITE_BUFFER_MB", defaults.store_write_buffer_mb
            ),
            store_block_cache_mb=_int(
                env, "DRIFTLINE_STORE_BLOCK_CACHE_MB", defaults.store_block_cache_mb
            ),
            heap_trim_interval_s=_float(
                env, "DRIFTLINE_HEAP_TRIM_INTERVAL_S", defaults.heap_trim_interval_s
            ),
            malloc_arenas=_int(env, "DRIFTLINE_MALLOC_ARENAS", defaults.malloc_arenas),
            compaction_lag_ms=_int(env, "DRIFTLINE_COMPACTION_LAG_MS", defaults.compaction_lag_ms),
            tombstone_retention_ms=_int(
                env, "DRIFTLINE_TOMBSTONE_RETENTION_MS", defaults.tombstone_retention_ms
            ),
            # The name the product documentation gives this knob.
            event_deletion_batch_size=_int(
                env, "EVENT_DELETION_BATCH_SIZE", defaults.event_deletion_batch_size
            ),
            deletion_daily_cap=_int(
                env, "DRIFTLINE_DELETION_DAILY_CAP", defaults.deletion_daily_cap
            ),
            delete_requests_per_day=_int(
                env, "DRIFTLINE_DELETE_REQUESTS_PER_DAY", defaults.delete_requests_per_day
            ),
            api_host=env.get("DRIFTLINE_API_HOST", defaults.api_host),
            api_port=_int(env, "DRIFTLINE_API_PORT", defaults.api_port),
            api_tokens_file=Path(
                env.get("DRIFTLINE_API_TOKENS_FILE", str(home / "api-tokens.json"))
            ),
            api_max_body_bytes=_int(
                env, "DRIFTLINE_API_MAX_BODY_BYTES", defaults.api_max_body_bytes
            ),
            api_header_timeout_s=_float(
                env, "DRIFTLINE_API_HEADER_TIMEOUT_S", defaults.api_header_timeout_s
            ),
            api_body_timeout_s=_float(
                env, "DRIFTLINE_API_BODY_TIMEOUT_S", defaults.api_body_timeout_s
            ),
            api_redis_timeout_s=_float(
                env, "DRIFTLINE_API_REDIS_TIMEOUT_S", defaults.api_redis_timeout_s
            ),
            api_url=env.get("DRIFTLINE_API_URL") or None,
            api_token=env.get("DRIFTLINE_API_TOKEN") or None,
        )

    def to_env(self) -> dict[str, str]:
        """The environment that makes ``from_env`` rebuild these settings (for subprocesses)."""
        env = {
            "DRIFTLINE_TOPIC_PREFIX": self.topic_prefix,
            "DRIFTLINE_INGEST_PARTITIONS": str(self.ingest_partitions),
            "DRIFTLINE_INGEST_RETENTION_MS": str(self.ingest_retention_ms),
            "DRIFTLINE_MAX_EVENT_BYTES": str(self.max_event_bytes),
            "DRIFTLINE_BINS_PARTITIONS": str(self.bins_partitions),
            "DRIFTLINE_EMIT_INTERVAL_S": str(self.emit_interval_s),
            "DRIFTLINE_BATCH_MAX_MESSAGES": str(self.batch_max_messages),
            "DRIFTLINE_BATCH_WITHIN_S": str(self.batch_within_s),
            "DRIFTLINE_PARKED_UPDATE_TIMEOUT_S": str(self.parked_update_timeout_s),
            "DRIFTLINE_PARKED_UPDATES_PER_EVENT": str(self.parked_updates_per_event),
            "DRIFTLINE_SESSION_TIMEOUT_MS": str(self.session_timeout_ms),
            "DRIFTLINE_WORKER_HOST": self.worker_host,
            "DRIFTLINE_WORKER_PORT": str(self.worker_port),
            "DRIFTLINE_HOME": str(self.home),
            "DRIFTLINE_KAFKA_VERSION": self.kafka_version,
            "DRIFTLINE_LOCAL_KAFKA_PORT": str(self.local_kafka_port),
            "DRIFTLINE_LOCAL_REDIS_PORT": str(self.local_redis_port),
            "DRIFTLINE_DATA_DIR": str(self.data_dir),
            "DRIFTLINE_STORE_WRITE_BUFFER_MB": str(self.store_write_buffer_mb),
            "DRIFTLINE_STORE_BLOCK_CACHE_MB": str(self.store_block_cache_mb),
            "DRIFTLINE_HEAP_TRIM_INTERVAL_S": str(self.heap_trim_interval_s),
            "DRIFTLINE_MALLOC_ARENAS": str(self.malloc_arenas),
            "DRIFTLINE_COMPACTION_LAG_MS": str(self.compaction_lag_ms),
            "DRIFTLINE_TOMBSTONE_RETENTION_MS": str(self.tombstone_retention_ms),
            "EVENT_DELETION_BATCH_SIZE": str(self.event_deletion_batch_size),
            "DRIFTLINE_DELETION_DAILY_CAP": str(self.deletion_daily_cap),
            "DRIFTLINE_DELETE_REQUESTS_PER_DAY": str(self.delete_requests_per_day),
            "DRIFTLINE_API_HOST": self.api_host,
            "DRIFTLINE_API_PORT": str(self.api_port),
            "DRIFTLINE_API_TOKENS_FILE": str(self.api_tokens_file),
            "DRIFTLINE_API_MAX_BODY_BYTES": str(self.api_max_body_bytes),
            "DRIFTLINE_API_HEADER_TIMEOUT_S": str(self.api_header_timeout_s),
            "DRIFTLINE_API_BODY_TIMEOUT_S": str(self.api_body_timeout_s),
            "DRIFTLINE_API_REDIS_TIMEOUT_S": str(self.api_redis_timeout_s),
        }
        if self.worker_advertised_url is not None:
            env["DRIFTLINE_WORKER_ADVERTISED_URL"] = self.worker_advertised_url
        if self.internal_secret is not None:
            env["DRIFTLINE_INTERNAL_SECRET"] = self.internal_secret
        if self.api_url is not None:
            env["DRIFTLINE_API_URL"] = self.api_url
        if self.api_token is not None:
            env["DRIFTLINE_API_TOKEN"] = self.api_token
        if self.kafka_bootstrap_servers is not None:
            env["KAFKA_BOOTSTRAP_SERVERS"] = self.kafka_bootstrap_servers
        if self.redis_url is not None:
            env["REDIS_URL"] = self.redis_url
        return env

    @property
    def worker_url(self) -> str:
        return self.worker_advertised_url or f"http://{self.worker_host}:{self.worker_port}"

    @property
    def api_base_url(self) -> str:
        """Where clients find the API: DRIFTLINE_API_URL, else the local API's address."""
        return self.api_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.local_kafka_port}"

    @property
    def redis(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.local_redis_port}/0"

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
