"""The one place that reads the environment.

Every knob of Driftline is a field here, read once by ``Settings.from_env()`` and passed
down explicitly; nothing else touches ``os.environ``. Defaults describe the embedded
local stack (a single-node Kafka on 127.0.0.1 and a loopback Redis) so that a fresh
checkout runs without any configuration.

Each field is declared once: its environment variable is in the field's metadata and its
type says how the variable is read, so ``from_env`` and ``to_env`` loop over the fields
and a new setting is one line here (a child process started with ``to_env`` cannot miss
it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints

# Field metadata: the environment variable, and for a path kept in the home by default,
# its name there (``from_env`` puts it in the home that DRIFTLINE_HOME names).
ENV = "env"
UNDER_HOME = "under_home"


def _default_home() -> Path:
    return Path.home() / ".cache" / "driftline"


def setting(env: str, default: object) -> Any:
    """A field read from the environment variable ``env`` (``default`` when unset)."""
    return field(default=default, metadata={ENV: env})


def under_home(env: str, name: str) -> Any:
    """A path field that defaults to ``name`` in the home."""
    return field(
        default_factory=lambda: _default_home() / name, metadata={ENV: env, UNDER_HOME: name}
    )


@dataclass(frozen=True, slots=True)
class Settings:
    # Where to find Kafka. None means "the embedded broker started by `driftline stack up`".
    kafka_bootstrap_servers: str | None = setting("KAFKA_BOOTSTRAP_SERVERS", None)
    # Where to find Redis. None means "the loopback redis-server the stack starts".
    redis_url: str | None = setting("REDIS_URL", None)
    # Where the PostgreSQL projection (Grafana's datasource) writes. None means "the
    # loopback PostgreSQL the stack starts"; its tables live in a schema named after the
    # topic prefix, so tests and tenants never share rows.
    postgres_url: str | None = setting("DRIFTLINE_POSTGRES_URL", None)
    # Whether a worker projects the metrics topic into Redis (what the API serves) and the
    # metrics and alerts topics into PostgreSQL. Off: another worker group projects them
    # (projections scaled apart from merge and bins), or a benchmark measures without.
    redis_projection: bool = setting("DRIFTLINE_REDIS_PROJECTION", True)
    postgres_projection: bool = setting("DRIFTLINE_POSTGRES_PROJECTION", True)
    # Prefix of every topic and of the Faust app id, so tests and tenants never share topics.
    topic_prefix: str = setting("DRIFTLINE_TOPIC_PREFIX", "driftline")
    ingest_partitions: int = setting("DRIFTLINE_INGEST_PARTITIONS", 8)
    # How long the raw ingest topic keeps messages: the one place erased events may linger.
    ingest_retention_ms: int = setting("DRIFTLINE_INGEST_RETENTION_MS", 7 * 24 * 3600 * 1000)
    # Larger events are dead-lettered rather than stored.
    max_event_bytes: int = setting("DRIFTLINE_MAX_EVENT_BYTES", 256 * 1024)
    # Merge agent batching: up to this many messages, or whatever arrived within this time.
    batch_max_messages: int = setting("DRIFTLINE_BATCH_MAX_MESSAGES", 10_000)
    batch_within_s: float = setting("DRIFTLINE_BATCH_WITHIN_S", 0.05)
    # Partitions of the bin topics (partials, metrics), keyed by model and hour.
    bins_partitions: int = setting("DRIFTLINE_BINS_PARTITIONS", 4)
    # A bin is re-emitted at most once per this interval, however often it changes.
    emit_interval_s: float = setting("DRIFTLINE_EMIT_INTERVAL_S", 0.5)
    # Alert notifications: each attempt's timeout, attempts per notification before it is
    # dead-lettered, and the first wait between attempts (doubling after each).
    notify_timeout_s: float = setting("DRIFTLINE_NOTIFY_TIMEOUT_S", 5.0)
    notify_attempts: int = setting("DRIFTLINE_NOTIFY_ATTEMPTS", 5)
    notify_backoff_s: float = setting("DRIFTLINE_NOTIFY_BACKOFF_S", 0.5)
    # An update that arrives before its insert waits this long / this many per event.
    parked_update_timeout_s: float = setting("DRIFTLINE_PARKED_UPDATE_TIMEOUT_S", 600.0)
    parked_updates_per_event: int = setting("DRIFTLINE_PARKED_UPDATES_PER_EVENT", 100)
    # How soon the group notices a dead worker and moves its partitions.
    session_timeout_ms: int = setting("DRIFTLINE_SESSION_TIMEOUT_MS", 10_000)
    # Worker HTTP server: the API's reads (with the internal secret), health, readiness.
    worker_host: str = setting("DRIFTLINE_WORKER_HOST", "127.0.0.1")
    worker_port: int = setting("DRIFTLINE_WORKER_PORT", 6066)
    # How the API and other workers reach this worker, when not at host:port (containers).
    worker_advertised_url: str | None = setting("DRIFTLINE_WORKER_ADVERTISED_URL", None)
    # The shared secret the API sends to the workers' internal routes. None: a random one
    # kept in ``<home>/internal-secret`` (0600), so a local stack needs no configuration
    # (``driftline.internal_secret``).
    internal_secret: str | None = setting("DRIFTLINE_INTERNAL_SECRET", None)
    # Embedded stack.
    home: Path = field(default_factory=_default_home, metadata={ENV: "DRIFTLINE_HOME"})
    kafka_version: str = setting("DRIFTLINE_KAFKA_VERSION", "4.1.1")
    local_kafka_port: int = setting("DRIFTLINE_LOCAL_KAFKA_PORT", 19092)
    local_redis_port: int = setting("DRIFTLINE_LOCAL_REDIS_PORT", 16379)
    local_postgres_port: int = setting("DRIFTLINE_LOCAL_POSTGRES_PORT", 15432)
    # RocksDB table data of the worker.
    data_dir: Path = under_home("DRIFTLINE_DATA_DIR", "worker-data")
    # The memory all RocksDB stores of a worker share: memtables (flushed to disk beyond
    # this budget) are charged to the block cache, which holds them, the index and filter
    # blocks and the cached data blocks.
    store_write_buffer_mb: int = setting("DRIFTLINE_STORE_WRITE_BUFFER_MB", 64)
    store_block_cache_mb: int = setting("DRIFTLINE_STORE_BLOCK_CACHE_MB", 128)
    # How often the worker hands freed heap back to the system (glibc); 0: never.
    heap_trim_interval_s: float = setting("DRIFTLINE_HEAP_TRIM_INTERVAL_S", 10.0)
    # glibc malloc arenas of the worker process (each keeps its own free memory);
    # 0: glibc's default, 8 per core.
    malloc_arenas: int = setting("DRIFTLINE_MALLOC_ARENAS", 2)
    # Compacted topics roll a segment at least this often and compact it within this lag,
    # and keep a tombstone this long: together they bound how long a deleted event's
    # last value (then its tombstone) stays readable in a changelog.
    compaction_lag_ms: int = setting("DRIFTLINE_COMPACTION_LAG_MS", 3600 * 1000)
    tombstone_retention_ms: int = setting("DRIFTLINE_TOMBSTONE_RETENTION_MS", 3600 * 1000)
    # Time-range deletions: events removed per step (ingestion goes on between steps),
    # and at most this many events deleted per model per UTC day. The first's variable
    # has no DRIFTLINE_ prefix: it is the name the product documentation gives the knob.
    event_deletion_batch_size: int = setting("EVENT_DELETION_BATCH_SIZE", 100_000)
    deletion_daily_cap: int = setting("DRIFTLINE_DELETION_DAILY_CAP", 100_000_000)
    # Delete requests accepted per model per UTC day (kept in Redis, across API processes).
    delete_requests_per_day: int = setting("DRIFTLINE_DELETE_REQUESTS_PER_DAY", 30)
    # The REST API process.
    api_host: str = setting("DRIFTLINE_API_HOST", "127.0.0.1")
    api_port: int = setting("DRIFTLINE_API_PORT", 8080)
    # The API's Prometheus metrics listen apart from the public REST port (SPEC §5: only
    # the REST API is public); the worker serves its /metrics on its internal port.
    api_metrics_host: str = setting("DRIFTLINE_API_METRICS_HOST", "127.0.0.1")
    api_metrics_port: int = setting("DRIFTLINE_API_METRICS_PORT", 9464)
    # Bearer tokens: SHA-256 hashes with their projects, written by `driftline api token`.
    api_tokens_file: Path = under_home("DRIFTLINE_API_TOKENS_FILE", "api-tokens.json")
    api_max_body_bytes: int = setting("DRIFTLINE_API_MAX_BODY_BYTES", 16 * 1024 * 1024)
    # A client has this long to send a request's line and headers (408, then closed; an
    # idle keep-alive connection is closed after as long), and this long for its body.
    api_header_timeout_s: float = setting("DRIFTLINE_API_HEADER_TIMEOUT_S", 10.0)
    api_body_timeout_s: float = setting("DRIFTLINE_API_BODY_TIMEOUT_S", 30.0)
    # The API's Redis calls give up after this long (one retry on a new connection when a
    # pooled one is dead, e.g. after a Redis restart); the route then answers 503.
    api_redis_timeout_s: float = setting("DRIFTLINE_API_REDIS_TIMEOUT_S", 2.0)
    # What clients (the Python client, the CLI) use to reach the API.
    api_url: str | None = setting("DRIFTLINE_API_URL", None)
    api_token: str | None = setting("DRIFTLINE_API_TOKEN", None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting_field in fields(cls):
            raw = env.get(setting_field.metadata[ENV])
            if raw is not None and not _unset(raw, _KINDS[setting_field.name]):
                values[setting_field.name] = _parse(setting_field, raw)
        home = values.get("home", _default_home())
        for setting_field in fields(cls):
            if UNDER_HOME in setting_field.metadata and setting_field.name not in values:
                values[setting_field.name] = home / setting_field.metadata[UNDER_HOME]
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The environment that makes ``from_env`` rebuild these settings (for subprocesses)."""
        return {
            setting_field.metadata[ENV]: str(value)
            for setting_field in fields(self)
            if (value := getattr(self, setting_field.name)) is not None
        }

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

    @property
    def postgres(self) -> str:
        return self.postgres_url or (
            f"postgresql://driftline@127.0.0.1:{self.local_postgres_port}/driftline"
        )

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


# Each field's type, which says how its variable is read.
_KINDS = get_type_hints(Settings)


def _unset(raw: str, kind: object) -> bool:
    """An empty variable leaves a number or a switch at its default and an optional text
    unset; a text or a path takes it as given."""
    return raw == "" and kind in (int, float, bool, str | None)


def _parse(setting_field: Field[Any], raw: str) -> object:
    kind = _KINDS[setting_field.name]
    if kind is bool:
        return _switch(setting_field, raw)
    if kind is int:
        return _number(int, "an integer", setting_field, raw)
    if kind is float:
        return _number(float, "a number", setting_field, raw)
    if kind is Path:
        return Path(raw)
    return raw


_SWITCH_WORDS = {"1": True, "true": True, "yes": True, "on": True,
                 "0": False, "false": False, "no": False, "off": False}  # fmt: skip


def _switch(setting_field: Field[Any], raw: str) -> bool:
    try:
        return _SWITCH_WORDS[raw.strip().lower()]
    except KeyError:
        raise ValueError(
            f"{setting_field.metadata[ENV]} must be on or off (1/0, true/false, yes/no), "
            f"got {raw!r}"
        ) from None


def _number(
    kind: type[int] | type[float], what: str, setting_field: Field[Any], raw: str
) -> object:
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{setting_field.metadata[ENV]} must be {what}, got {raw!r}") from None
