"""A partition's store is kept when it is at the changelog's last checkpoint, and otherwise
rebuilt from the committed changelog only: an aborted batch leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer

from driftline.agents.restore import ChangelogRestorer
from driftline.settings import Settings
from driftline.state.store import Checkpoint, PartitionStore, store_key
from driftline.topics.admin import ensure_topics
from driftline.topics.catalog import TopicSpec
from driftline.topics.changelog import CHECKPOINT_KEY

pytestmark = pytest.mark.integration


def changelog(settings: Settings) -> TopicSpec:
    topic = TopicSpec(f"{settings.topic_prefix}.changelog", 1, {"cleanup.policy": "compact"})
    ensure_topics(settings.bootstrap_servers, [topic])
    return topic


def transactional_producer(settings: Settings, topic: str) -> Producer:
    producer = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "transactional.id": topic}
    )
    producer.init_transactions(30)
    return producer


def transaction(
    producer: Producer, topic: str, records: list[tuple[bytes, bytes | None]], commit: bool
) -> None:
    producer.begin_transaction()
    for key, value in records:
        producer.produce(topic, value, key, partition=0)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.flush(30)
        producer.abort_transaction(30)


def test_a_stale_store_is_rebuilt_from_committed_batches_only(
    settings: Settings, tmp_path: Path
) -> None:
    topic = changelog(settings).name
    producer = transactional_producer(settings, topic)
    a, b, m = store_key("events", b"a"), store_key("events", b"b"), store_key("counters", b"m")
    transaction(producer, topic, [(a, b"1"), (b, b"1"), (CHECKPOINT_KEY, b"[10,1]")], True)
    transaction(producer, topic, [(a, b"2"), (b, None), (CHECKPOINT_KEY, b"[20,2]")], True)
    # A batch whose transaction was aborted (an outage, a crash fenced by the next worker).
    transaction(producer, topic, [(a, b"3"), (m, b"3"), (CHECKPOINT_KEY, b"[30,3]")], False)
    stale = PartitionStore(tmp_path / "p0")
    stale.write_raw([(store_key("events", b"only-local"), b"x")], Checkpoint(10, 1))
    stale.close()

    restorer = ChangelogRestorer(settings.bootstrap_servers, topic)
    try:
        store = restorer.open(0, tmp_path / "p0")
    finally:
        restorer.close()
    assert store.get("events", b"a") == b"2"
    assert store.get("events", b"b") is None
    assert store.get("counters", b"m") is None
    assert store.get("events", b"only-local") is None
    assert store.checkpoint() == Checkpoint(next_input_offset=20, sequence=2)
    store.close()


def test_a_store_at_the_last_checkpoint_is_kept_as_it_is(
    settings: Settings, tmp_path: Path
) -> None:
    topic = changelog(settings).name
    producer = transactional_producer(settings, topic)
    transaction(
        producer, topic, [(store_key("events", b"a"), b"1"), (CHECKPOINT_KEY, b"[5,2]")], True
    )
    local = PartitionStore(tmp_path / "p0")
    local.write_raw([(store_key("events", b"only-local"), b"x")], Checkpoint(5, 2))
    local.close()

    restorer = ChangelogRestorer(settings.bootstrap_servers, topic)
    try:
        store = restorer.open(0, tmp_path / "p0")
    finally:
        restorer.close()
    # At the last checkpoint: no restore, so what only the local copy has is still there.
    assert store.get("events", b"only-local") == b"x"
    store.close()
