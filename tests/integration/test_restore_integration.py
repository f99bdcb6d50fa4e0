"""Restoring a partition from its changelog takes whole batches only."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.runtime import INPUT_CHECKPOINT_KEY, ChangelogRestorer
from driftline.settings import Settings
from state.store import Checkpoint, PartitionStore, store_key
from topics.admin import ensure_topics
from topics.producer import CheckedProducer
from topics.registry import TopicSpec

pytestmark = pytest.mark.integration


def test_a_batch_cut_short_by_a_crash_is_not_restored(settings: Settings, tmp_path: Path) -> None:
    topic = TopicSpec(f"{settings.topic_prefix}.changelog", 1, {"cleanup.policy": "compact"})
    ensure_topics(settings.bootstrap_servers, [topic])
    producer = CheckedProducer(settings.bootstrap_servers)

    def send(key: bytes, value: bytes | None) -> None:
        producer.produce(topic.name, key, value, partition=0)

    send(store_key("events", b"a"), b"1")
    send(store_key("events", b"b"), b"1")
    send(INPUT_CHECKPOINT_KEY, b"10")  # batch 1 complete
    send(store_key("events", b"a"), b"2")
    send(store_key("events", b"b"), None)
    send(INPUT_CHECKPOINT_KEY, b"20")  # batch 2 complete
    send(store_key("events", b"a"), b"3")  # batch 3: the crash came before its checkpoint
    send(store_key("counters", b"m"), b"3")
    producer.flush()

    restorer = ChangelogRestorer(settings.bootstrap_servers, topic.name)
    try:
        store, end = restorer.restore(0, tmp_path / "p0")
    finally:
        restorer.close()
    assert end == 8
    assert store.get("events", b"a") == b"2"
    assert store.get("events", b"b") is None
    assert store.get("counters", b"m") is None
    assert store.checkpoint() == Checkpoint(next_input_offset=20, next_changelog_offset=8)
    store.close()


def test_a_store_level_with_its_changelog_is_kept_as_it_is(
    settings: Settings, tmp_path: Path
) -> None:
    topic = TopicSpec(f"{settings.topic_prefix}.changelog", 1, {"cleanup.policy": "compact"})
    ensure_topics(settings.bootstrap_servers, [topic])
    producer = CheckedProducer(settings.bootstrap_servers)
    producer.produce(topic.name, store_key("events", b"a"), b"1", partition=0)
    producer.produce(topic.name, INPUT_CHECKPOINT_KEY, b"5", partition=0)
    producer.flush()
    local = PartitionStore(tmp_path / "p0")
    local.write_raw([(store_key("events", b"only-local"), b"x")], Checkpoint(5, 2))
    local.close()

    restorer = ChangelogRestorer(settings.bootstrap_servers, topic.name)
    try:
        store, _ = restorer.restore(0, tmp_path / "p0")
    finally:
        restorer.close()
    # Level with the changelog: no restore, so what only the local copy has is still there.
    assert store.get("events", b"only-local") == b"x"
    store.close()
