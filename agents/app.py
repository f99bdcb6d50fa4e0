"""The worker: a Faust app hosting the agents' batch engines and the HTTP views.

``create_app(settings, internal_secret)`` builds everything from explicit settings (the
application's, passed in), so tests build fresh apps against their own topics; nothing
happens at import time.

    ingest ─► merge agent ─► bin-partials ─► bins agent ─► metrics ─► Redis projection
              (events,                        (sums shares,  (compacted) ─► PostgreSQL
               partial bins)                   metrics)  ─► model-bins ─► alert evaluator
                                                                          ─► alerts ─┐
                     webhook, Slack, PagerDuty (HTTP POST, a task per channel) ◄─ notifier
                                                          PostgreSQL projection ◄─┘

The projections and the ownership heartbeat write Redis and PostgreSQL on threads of
their own, with consumers of their own, that wait out their outages, and the merge
runner's assignment only wakes the heartbeat: the worker starts and ingests while Redis
or PostgreSQL is down, and neither slows the merge and bins agents.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import faust
import redis

from driftline.agents.alert_evaluator import AlertEvaluator
from driftline.agents.bin_totals import BinTotalsProcessor
from driftline.agents.deletion_budget import RedisDeletionBudget
from driftline.agents.heap import HeapTrimmer
from driftline.agents.merge import MergeProcessor
from driftline.agents.notifier import Notifier
from driftline.agents.ownership import OwnershipHeartbeat
from driftline.agents.postgres_projection import (
    AlertRows,
    BinRows,
    PostgresSink,
    TableWriter,
    postgres_projection,
)
from driftline.agents.runtime import PartitionedRunner, RunnerConfig
from driftline.agents.serving import redis_projection
from driftline.agents.thread_cpu import ThreadsCpu
from driftline.agents.threads import Runner, RunnerThreads
from driftline.agents.web import register_views
from driftline.state.store import MIB, StoreResources
from driftline.topics.admin import ensure_topics
from driftline.topics.alert_rules import AlertRules
from driftline.topics.catalog import Topics, TopicSettings
from driftline.topics.clients import RepeatFilter
from driftline.topics.model_registry import ModelRegistry
from driftline.topics.ownership import PartitionOwners
from driftline.topics.postgres_tables import schema_name
from driftline.topics.redis_bins import RedisBins


class QuietWorker(faust.Worker):
    """Faust's worker, whose log handlers let a repeated warning through once a minute:
    under Faust, aiokafka logged ~10 ERROR lines a second while the broker was away."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        for handler in logger.handlers:
            handler.addFilter(RepeatFilter())


class WorkerSettings(TopicSettings, Protocol):
    """What the worker takes from the application's settings (``driftline.settings.Settings``
    is one), passed in; the internal secret comes resolved, beside them."""

    @property
    def redis(self) -> str: ...

    @property
    def postgres(self) -> str: ...

    @property
    def redis_projection(self) -> bool: ...

    @property
    def postgres_projection(self) -> bool: ...

    @property
    def worker_host(self) -> str: ...

    @property
    def worker_port(self) -> int: ...

    @property
    def worker_url(self) -> str: ...

    @property
    def data_dir(self) -> Path: ...

    @property
    def session_timeout_ms(self) -> int: ...

    @property
    def store_write_buffer_mb(self) -> int: ...

    @property
    def store_block_cache_mb(self) -> int: ...

    @property
    def heap_trim_interval_s(self) -> float: ...

    @property
    def batch_max_messages(self) -> int: ...

    @property
    def batch_within_s(self) -> float: ...

    @property
    def max_event_bytes(self) -> int: ...

    @property
    def parked_updates_per_event(self) -> int: ...

    @property
    def parked_update_timeout_s(self) -> float: ...

    @property
    def event_deletion_batch_size(self) -> int: ...

    @property
    def deletion_daily_cap(self) -> int: ...

    @property
    def emit_interval_s(self) -> float: ...

    @property
    def notify_timeout_s(self) -> float: ...

    @property
    def notify_attempts(self) -> int: ...

    @property
    def notify_backoff_s(self) -> float: ...


@dataclass
class Worker:
    """What the views and tests need to reach inside a running worker."""

    settings: WorkerSettings
    # The secret the API sends to the internal views (``driftline.internal_secret``).
    internal_secret: str
    topics: Topics
    app: faust.App
    merge: PartitionedRunner
    bins: PartitionedRunner
    alerts: PartitionedRunner
    owners: PartitionOwners
    redis_bins: RedisBins


def create_app(settings: WorkerSettings, internal_secret: str) -> Worker:
    topics = Topics.for_settings(settings)
    ensure_topics(settings.bootstrap_servers, topics.owned)
    app = faust.App(
        topics.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        web_host=settings.worker_host,
        web_bind=settings.worker_host,
        web_port=settings.worker_port,
        datadir=str(settings.data_dir / "faust"),
        autodiscover=False,
        topic_replication_factor=1,
        topic_partitions=1,
        # Faust's own consumer group must also notice a dead worker quickly; its default
        # (60 s) would hold a restarted worker's start-up for that long.
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_ms / 5000),
    )
    redis_client = redis.Redis.from_url(settings.redis)
    owners = PartitionOwners(
        redis_client,
        settings.topic_prefix,
        settings.worker_url,
    )
    redis_bins = RedisBins(redis_client, settings.topic_prefix)
    budget = RedisDeletionBudget(redis_client, settings.topic_prefix, settings.deletion_daily_cap)
    # Reads the merge runner's partitions when it beats; woken on every assignment.
    heartbeat = OwnershipHeartbeat(owners, held=lambda: list(merge.stores))
    # One memory budget for the stores of both runners (a dozen RocksDB instances).
    resources = StoreResources(
        settings.store_write_buffer_mb * MIB, settings.store_block_cache_mb * MIB
    )
    merge = _merge_runner(settings, topics, heartbeat.wake, budget, resources)
    bins = _bins_runner(settings, topics, resources, behind=merge.behind)
    alerts = _alerts_runner(settings, topics, resources)
    worker = Worker(settings, internal_secret, topics, app, merge, bins, alerts, owners, redis_bins)

    @app.service
    class Agents(RunnerThreads):
        runners = (
            merge, bins, alerts, heartbeat, *_projections(settings, topics, redis_bins),
            HeapTrimmer(settings.heap_trim_interval_s), _notifier(settings, topics),
        )  # fmt: skip

    register_views(worker)
    return worker


def _projections(settings: WorkerSettings, topics: Topics, redis_bins: RedisBins) -> list[Runner]:
    """The projections the settings switch on: the metrics topic into Redis (``serving``),
    the metrics and alerts topics into PostgreSQL (``postgres-bins``, ``postgres-alerts``)."""
    found: list[Runner] = []
    if settings.redis_projection:
        found.append(
            redis_projection(
                settings.bootstrap_servers,
                topics.metrics.name,
                topics.serving_group,
                redis_bins,
                settings.session_timeout_ms,
            )
        )
    if settings.postgres_projection:
        schema = schema_name(settings.topic_prefix)
        into_postgres: list[tuple[str, str, str, TableWriter]] = [
            ("postgres-bins", topics.metrics.name, topics.postgres_bins_group, BinRows()),
            ("postgres-alerts", topics.alerts.name, topics.postgres_alerts_group, AlertRows()),
        ]
        for name, topic, group, rows in into_postgres:
            found.append(
                postgres_projection(
                    name,
                    settings.bootstrap_servers,
                    topic,
                    group,
                    PostgresSink(settings.postgres, schema, topic, rows),
                    settings.session_timeout_ms,
                    topics.dead_letters.name,
                    timed=topic == topics.metrics.name,
                )
            )
    return found


def _merge_runner(
    settings: WorkerSettings,
    topics: Topics,
    on_assignment: Callable[[set[int]], None],
    budget: RedisDeletionBudget,
    resources: StoreResources,
) -> PartitionedRunner:
    registry = ModelRegistry(settings.bootstrap_servers, topics.models.name)
    processor = MergeProcessor(
        registered_model=registry.get,
        ingest_topic=topics.ingest.name,
        dead_letter_topic=topics.dead_letters.name,
        max_event_bytes=settings.max_event_bytes,
        parked_updates_per_event=settings.parked_updates_per_event,
        parked_update_timeout_s=settings.parked_update_timeout_s,
        bin_partials_topic=topics.bin_partials.name,
        deletion_batch_size=settings.event_deletion_batch_size,
        deletion_budget=budget,
        ingest_partitions=settings.ingest_partitions,
        bins_partitions=settings.bins_partitions,
    )
    config = _runner_config(
        settings, topics, resources, "merge", topics.merge_group, topics.ingest.name,
        topics.merge_changelog.name,
        batch_within_s=settings.batch_within_s,
        # Waiting updates time out by when their inserts were sent, not by when read.
        input_clock=True,
    )  # fmt: skip
    return PartitionedRunner(config, processor, on_assignment=on_assignment)


# The worker's threads whose work follows from the emissions: they write the bins to
# Redis and PostgreSQL and evaluate alerts on them. An emission cost the bins stage a
# third of a millisecond and them twice that again (py-spy, a year's backfill); counted
# without them, that backfill spent two fifths of the worker on emitting, not a tenth.
DOWNSTREAM_THREADS = ("serving", "postgres-bins", "postgres-alerts", "alerts")


def _bins_runner(
    settings: WorkerSettings,
    topics: Topics,
    resources: StoreResources,
    behind: Callable[[], bool],
) -> PartitionedRunner:
    """``behind``: whether the merge stage of this worker has a backlog, to give way to."""
    # Its own registry reader: each runner thread owns the consumer it reads with.
    registry = ModelRegistry(settings.bootstrap_servers, topics.models.name)
    processor = BinTotalsProcessor(
        registry.get,
        topics.metrics.name,
        topics.model_bins.name,
        settings.emit_interval_s,
        topics.dead_letters.name,
        behind=behind,
        downstream_ms=ThreadsCpu(DOWNSTREAM_THREADS).used_ms,
    )
    config = _runner_config(
        settings, topics, resources, "bins", topics.bins_group, topics.bin_partials.name,
        topics.bins_changelog.name,
        # Emission is tick-driven: dirty bins go out within a tick of the coalescing window.
        tick_interval_s=min(0.1, settings.emit_interval_s),
    )  # fmt: skip
    return PartitionedRunner(config, processor, on_assignment=processor.assigned)


def _alerts_runner(
    settings: WorkerSettings, topics: Topics, resources: StoreResources
) -> PartitionedRunner:
    """The alert evaluator on the model-bins topic: a few messages a second, so small
    batches and a tick a second (a period comes due to the second)."""
    registry = ModelRegistry(settings.bootstrap_servers, topics.models.name)
    rules = AlertRules(settings.bootstrap_servers, topics.alert_rules.name)
    processor = AlertEvaluator(registry.get, rules, topics.alerts.name, topics.dead_letters.name)
    config = _runner_config(
        settings, topics, resources, "alerts", topics.alerts_group, topics.model_bins.name,
        topics.alerts_changelog.name,
        batch_max_messages=1000,
        tick_interval_s=1.0,
    )  # fmt: skip
    return PartitionedRunner(config, processor)


def _runner_config(
    settings: WorkerSettings,
    topics: Topics,
    resources: StoreResources,
    name: str,
    group_id: str,
    input_topic: str,
    changelog_topic: str,
    **tuning: Any,
) -> RunnerConfig:
    """A runner's configuration: what every runner shares, and its own ``tuning``."""
    shared: dict[str, Any] = {
        "batch_max_messages": settings.batch_max_messages,
        "batch_within_s": 0.02,
        **tuning,
    }
    return RunnerConfig(
        name=name,
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        dead_letter_topic=topics.dead_letters.name,
        input_topic=input_topic,
        changelog_topic=changelog_topic,
        data_dir=settings.data_dir,
        session_timeout_ms=settings.session_timeout_ms,
        store_resources=resources,
        **shared,
    )


def _notifier(settings: WorkerSettings, topics: Topics) -> Notifier:
    return Notifier(
        settings.bootstrap_servers, topics, settings.notify_timeout_s, settings.notify_attempts,
        settings.notify_backoff_s, settings.session_timeout_ms,
    )  # fmt: skip
