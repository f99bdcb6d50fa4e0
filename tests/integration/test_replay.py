"""``driftline replay`` on the real broker, Redis and PostgreSQL.

Bins: once the pipeline has settled, the derived state is wiped - the metrics topic's
records deleted, every Redis key of the prefix, the PostgreSQL schema - and nothing
rebuilds it by itself (the projections find an empty topic). ``driftline replay bins``
recomputes every bin from the stored events: the metrics topic, Redis and PostgreSQL then
hold what they held before (the same counts and metrics; a new version and emission
time). Events: replaying every retained ingest message, a foreign partitioner's message
among them, leaves the stored events and the bins as they were (ids make an insert a
replacement), and the foreign message is replayed once, through its forwarded copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import redis
from click.testing import CliRunner
from confluent_kafka import Producer

from driftline.cli import main
from driftline.client import Driftline
from driftline.replay import replay_events
from driftline.settings import Settings
from driftline.stack.worker import WorkerProcess
from driftline.state.bins import HOUR_MS
from driftline.topics.catalog import Topics
from driftline.topics.messages import encode_ingest, encode_rebuild_bins, ingest_key
from driftline.topics.partitioning import partition_for
from driftline.topics.postgres_tables import schema_name
from driftline.topics.producer import CheckedProducer
from driftline.topics.reading import read_topic
from driftline.topics.waiting import wait_until
from tests.support.hourly_bins import bins_in_redis, bins_in_topic, redis_matches_topic
from tests.support.models import CHURN_BASELINE, CHURN_SPEC, HOUR0
from tests.support.pipeline import stored_events, wait_for_lag_zero
from tests.support.postgres import bins_in_postgres, postgres_matches_topic

pytestmark = pytest.mark.integration

EVENTS = 240
HOURS = 5


def rows() -> list[dict[str, Any]]:
    return [
        {"event_id": f"e{i}", "timestamp": HOUR0 + (i % HOURS) * HOUR_MS + i,
         "age": 20 + i % 50, "plan": ["free", "pro"][i % 2], "score": (i % 10) / 10,
         "churned": None}
        for i in range(EVENTS)
    ]  # fmt: skip


def publish_history(settings: Settings) -> None:
    """Inserts, late labels for a third of them, and a deletion that updates the metrics."""
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
        client.publish_events_batch("shop", "churn", rows())
        labels = [{"event_id": f"e{i}", "churned": i % 2} for i in range(0, EVENTS, 3)]
        client.publish_events_batch("shop", "churn", labels, update_event=True)
    wait_for_lag_zero(settings)


def settled(settings: Settings) -> bool:
    return redis_matches_topic(settings) and postgres_matches_topic(settings)


def served(settings: Settings) -> dict[int, tuple[Any, Any]]:
    """Redis's bins as compared across a replay: counts and metrics (the version and the
    emission time change)."""
    return {hour: (b["counts"], b["metrics"]) for hour, b in bins_in_redis(settings).items()}


def postgres_rows(settings: Settings) -> dict[int, Any]:
    """PostgreSQL's bins without the version and the emission time."""
    return {
        hour: ((row[0], *row[3:]), metrics)
        for hour, (row, metrics) in bins_in_postgres(settings).items()
    }


def wipe_derived_state(settings: Settings) -> None:
    """A tombstone for every bin of the metrics topic (its compacted form: no bin), and
    the prefix's Redis keys and PostgreSQL schema gone."""
    topic = Topics.for_settings(settings).metrics.name
    producer = CheckedProducer(settings.bootstrap_servers)
    for message in read_topic(settings.bootstrap_servers, topic):
        producer.produce(topic, message.key(), None, partition=message.partition())
    producer.flush()
    client = redis.Redis.from_url(settings.redis)
    for key in client.scan_iter(f"{settings.topic_prefix}:*"):
        client.delete(key)
    with psycopg.connect(settings.postgres, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema_name(settings.topic_prefix)}" CASCADE')


def test_replay_bins_rebuilds_the_wiped_metrics_topic_redis_and_postgres(
    api_settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    """Through the API's status: the command waits until the pipeline has caught up."""
    settings = api_settings
    start_worker(settings)
    publish_history(settings)
    wait_until(lambda: settled(settings), timeout_s=60, what="Redis and PostgreSQL to settle")
    before_redis, before_postgres = served(settings), postgres_rows(settings)
    assert len(before_redis) == HOURS
    assert len(before_postgres) == HOURS

    wipe_derived_state(settings)
    wait_until(lambda: _schema_exists(settings) and not bins_in_postgres(settings),
               timeout_s=30, what="PostgreSQL's projection to find no bin")  # fmt: skip
    assert set(bins_in_topic(settings).values()) == {None}
    assert bins_in_redis(settings) == {}

    result = CliRunner().invoke(main, ["replay", "bins", "shop/churn"], env=settings.to_env(),
                                catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "every bin recomputed and re-emitted" in result.output
    wait_until(lambda: served(settings) == before_redis and settled(settings), timeout_s=60,
               what="Redis and PostgreSQL rebuilt by the replay")  # fmt: skip
    assert postgres_rows(settings) == before_postgres


def _schema_exists(settings: Settings) -> bool:
    with psycopg.connect(settings.postgres, connect_timeout=5) as connection:
        found = connection.execute(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
            (schema_name(settings.topic_prefix),),
        ).fetchone()
    return found is not None


def test_replay_events_leaves_the_events_and_bins_as_they_were(
    settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    start_worker(settings)
    publish_history(settings)
    ingest = Topics.for_settings(settings).ingest
    foreign_key = ingest_key("shop", "churn", "foreign")
    wrong = (partition_for(foreign_key, ingest.partitions) + 1) % ingest.partitions
    producer = CheckedProducer(settings.bootstrap_servers)
    foreign = {"age": 33, "plan": "pro", "score": 0.5, "churned": 1}
    producer.produce(ingest.name, foreign_key,
                     encode_ingest("insert", "shop", "churn", "foreign", foreign, HOUR0 + 7),
                     partition=wrong)  # fmt: skip
    producer.flush()
    wait_for_lag_zero(settings)
    wait_until(lambda: redis_matches_topic(settings), timeout_s=60, what="Redis to settle")
    events_before, bins_before = stored_events(settings), served(settings)
    assert "foreign" in events_before
    in_ingest = sum(1 for _ in read_topic(settings.bootstrap_servers, ingest.name))

    result = CliRunner().invoke(main, ["replay", "events", "--since", "0"],
                                env=settings.to_env(), catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    # Every message but the foreign one's original: its forwarded copy is replayed.
    assert f"replayed {in_ingest - 1:,} ingest messages" in result.output
    assert "skipped 1 that arrived on another partition" in result.output
    wait_for_lag_zero(settings)
    wait_until(lambda: redis_matches_topic(settings) and served(settings) == bins_before,
               timeout_s=60, what="the bins after the replay")  # fmt: skip
    assert stored_events(settings) == events_before


def test_replay_events_ends_where_a_transaction_marker_closes_the_span(
    settings: Settings,
) -> None:
    """The merge agent writes its forwarded messages and deletion steps to the ingest topic
    in transactions: a partition can end with a commit marker, an offset no message
    holds. A replay whose span ends so, and whose last message it skips (a request), still
    ends; it once waited for a message at that offset for ever."""
    ingest = Topics.for_settings(settings).ingest
    with Driftline(settings) as client:
        client.create_topics()
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers,
                         "transactional.id": f"replay-test-{settings.topic_prefix}"})  # fmt: skip
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(ingest.name, encode_rebuild_bins("shop", "churn"), b"shop/churn", partition=0)
    producer.commit_transaction(30)

    finished: list[Any] = []
    replay = threading.Thread(
        target=lambda: finished.append(replay_events(settings, 0, progress=False)), daemon=True
    )
    replay.start()
    replay.join(timeout=60)
    assert finished, "the replay did not end"
    assert finished[0].requests == 1
    assert finished[0].replayed == 0
