"""The churn model's hourly bins as Redis and the metrics topic hold them, and as a batch
recomputation from the stored events says they must be (independent of the agents)."""

from __future__ import annotations

from typing import Any

import redis

from driftline.settings import Settings
from driftline.state import exact_json
from driftline.state.baseline import profile_baseline
from driftline.state.bins import HOUR_MS, ContributionRules, bins_of
from driftline.state.events import StoredEvent
from driftline.state.spec import ModelSpec
from driftline.topics.catalog import Topics
from driftline.topics.progress import GroupProgress
from driftline.topics.reading import read_topic
from driftline.topics.redis_bins import RedisBins
from driftline.topics.waiting import wait_until
from tests.support.models import CHURN_BASELINE, CHURN_SPEC
from tests.support.pipeline import stored_events, wait_for_lag_zero


def bins_in_redis(settings: Settings) -> dict[int, dict[str, Any]]:
    """The bins Redis serves, by hour number (hours since the epoch)."""
    served = RedisBins(redis.Redis.from_url(settings.redis), settings.topic_prefix)
    found = served.read_range("shop/churn", 0, 2**62)
    return {b["hour_start_ms"] // HOUR_MS: b for b in found}


def bins_in_topic(settings: Settings) -> dict[int, dict[str, Any] | None]:
    """The metrics topic as compaction will leave it: the last value per bin."""
    latest: dict[int, dict[str, Any] | None] = {}
    topic = Topics.for_settings(settings).metrics.name
    for message in read_topic(settings.bootstrap_servers, topic):
        hour = int(message.key().decode().rsplit("/", 1)[1])
        latest[hour] = None if message.value() is None else exact_json.loads(message.value())
    return latest


def redis_matches_topic(settings: Settings) -> bool:
    """Redis holds exactly the metrics topic's last value of every bin (tombstones: none)."""
    try:
        in_redis = bins_in_redis(settings)
    except redis.RedisError:
        return False
    in_topic = {hour: b for hour, b in bins_in_topic(settings).items() if b is not None}
    return bool(in_topic) and in_redis == in_topic


def recomputed(settings: Settings) -> dict[int, dict[str, Any]]:
    """Batch recomputation from the final stored events, independent of the agents."""
    spec = ModelSpec.from_dict(CHURN_SPEC)
    rules = ContributionRules(spec, profile_baseline(spec, CHURN_BASELINE))
    events = [
        ("shop/churn", StoredEvent(event_id, ts, columns, 0, 0))
        for event_id, (ts, columns) in stored_events(settings).items()
    ]
    bins = bins_of({"shop/churn": rules}, events)
    # Arrival times are not part of this comparison: drop the ingest-delay sum.
    return {
        hour: {k: v for k, v in counters.items() if k != "delay_ms"}
        for (_, hour), counters in bins.items()
    }


def assert_redis_equals_recomputation(settings: Settings) -> None:
    """Once merged, the Redis bins settle on the batch recomputation from the final events."""
    wait_for_lag_zero(settings)
    expected = recomputed(settings)
    try:
        wait_until(lambda: _counts(bins_in_redis(settings)) == expected, timeout_s=30,
                   what="Redis bins to equal the batch recomputation")  # fmt: skip
    except TimeoutError:
        assert _counts(bins_in_redis(settings)) == expected, _pipeline_state(settings)


def _counts(bins: dict[int, dict[str, Any]]) -> dict[int, dict[str, int]]:
    return {
        hour: {k: v for k, v in b["counts"].items() if k != "delay_ms"} for hour, b in bins.items()
    }


def _pipeline_state(settings: Settings) -> str:
    """Where the bins pipeline stands, for a failure message."""
    topics = Topics.for_settings(settings)
    stages = {
        "bins": (topics.bins_group, topics.bin_partials),
        "serving": (topics.serving_group, topics.metrics),
    }
    lines = []
    for name, (group, topic) in stages.items():
        progress = GroupProgress(settings.bootstrap_servers, group, topic.name, topic.partitions)
        try:
            lines.append(f"{name}: end {progress.end()}, committed {progress.committed()}")
        finally:
            progress.close()
    last = {
        hour: None if b is None else b["counts"]["n"] for hour, b in bins_in_topic(settings).items()
    }
    lines.append(f"metrics topic, last events count per hour: {last}")
    return "; ".join(lines)
