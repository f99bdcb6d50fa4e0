"""The batch engine's error policy on the real broker: a message that cannot be applied is
dead-lettered with the exception as its reason and the rest goes on; every output of a
batch is written exactly once, with the batch."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Message

from driftline.agents.runtime import Outgoing, PartitionedRunner, RunnerConfig
from driftline.settings import Settings
from driftline.state.tables import BYTES, PartitionTransaction, Table
from driftline.topics.admin import ensure_topics
from driftline.topics.catalog import TopicSpec
from driftline.topics.dead_letters import DeadLetter
from driftline.topics.producer import CheckedProducer
from driftline.topics.progress import GroupProgress
from driftline.topics.reading import read_topic
from driftline.topics.waiting import wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 2


SEEN = Table("seen", BYTES, BYTES)


@dataclass
class EchoHandler:
    """Keeps each message's value in its store and echoes it to ``out``; raises on values
    that start with b"poison", and writes a record too large for the broker for b"huge"."""

    out: str
    dead_letters: str
    handled: list[int] = field(default_factory=list)

    def handle(
        self, partition: int, messages: Sequence[Message], tx: PartitionTransaction, now_ms: int
    ) -> list[Outgoing]:
        self.handled.append(len(messages))
        outgoing = []
        for message in messages:
            value = message.value() or b""
            if value.startswith(b"poison"):
                raise ValueError(f"cannot apply {value!r}")
            tx.set(SEEN, value, value * 2_000_000 if value == b"huge" else value)
            outgoing.append(Outgoing(self.out, message.key(), value))
        return outgoing

    def tick(self, partition: int, tx: PartitionTransaction, now_ms: int) -> list[Outgoing]:
        return []

    def dead_letter(
        self, partition: int, message: Message, reason: str, tx: PartitionTransaction
    ) -> list[Outgoing]:
        letter = DeadLetter.of(message, reason)
        return [Outgoing(self.dead_letters, letter.key, letter.value, letter.headers())]


@dataclass
class Engine:
    settings: Settings
    runner: PartitionedRunner
    handler: EchoHandler
    topics: dict[str, TopicSpec]

    def publish(self, values: list[bytes]) -> None:
        producer = CheckedProducer(self.settings.bootstrap_servers)
        for i, value in enumerate(values):
            producer.produce(self.topics["input"].name, f"k{i}".encode(), value)
        producer.flush()

    def wait_caught_up(self) -> None:
        progress = GroupProgress(
            self.settings.bootstrap_servers,
            self.runner.config.group_id,
            self.topics["input"].name,
            PARTITIONS,
        )
        try:
            progress.wait_caught_up(120)
        finally:
            progress.close()

    def values(self, name: str) -> list[bytes]:
        return [m.value() for m in read_topic(self.settings.bootstrap_servers,
                                              self.topics[name].name)]  # fmt: skip


@pytest.fixture
def engine(settings: Settings, tmp_path: Path) -> Iterator[Engine]:
    prefix = settings.topic_prefix
    topics = {
        name: TopicSpec(f"{prefix}.{name}", PARTITIONS if name != "dead" else 1)
        for name in ("input", "changelog", "out", "dead")
    }
    ensure_topics(settings.bootstrap_servers, topics.values())
    handler = EchoHandler(topics["out"].name, topics["dead"].name)
    config = RunnerConfig(
        name="echo",
        bootstrap_servers=settings.bootstrap_servers,
        group_id=f"{prefix}-echo",
        input_topic=topics["input"].name,
        changelog_topic=topics["changelog"].name,
        dead_letter_topic=topics["dead"].name,
        data_dir=tmp_path / "echo",
        batch_max_messages=500,
        session_timeout_ms=6000,
    )
    runner = PartitionedRunner(config, handler)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    wait_until(runner.ready.is_set, timeout_s=60, what="partitions assigned")
    yield Engine(settings, runner, handler, topics)
    runner.stop()
    thread.join(30)
    assert not thread.is_alive(), "the runner did not stop"


def test_a_poison_message_is_dead_lettered_with_its_reason_and_the_rest_goes_on(
    engine: Engine,
) -> None:
    values = [f"v{i}".encode() for i in range(400)]
    poison = {37: b"poison-1", 38: b"poison-2", 390: b"poison-3"}
    for index, value in poison.items():
        values[index] = value
    engine.publish(values)
    engine.wait_caught_up()

    good = sorted(v for v in values if not v.startswith(b"poison"))
    assert sorted(engine.values("out")) == good  # each exactly once
    letters = [
        DeadLetter.from_message(m.key(), m.value(), m.headers() or [])
        for m in read_topic(engine.settings.bootstrap_servers, engine.topics["dead"].name)
    ]
    assert sorted(letter.value or b"" for letter in letters) == sorted(poison.values())
    for letter in letters:
        assert f"ValueError: cannot apply {letter.value!r}" in letter.reason
    stores = engine.runner.stores
    seen = sorted(key for store in stores.values() for key, _ in store.items("seen"))
    assert seen == good
    # Whole batches went through whenever they held no poison.
    assert max(engine.handler.handled) > 1


def test_a_message_whose_record_the_broker_would_refuse_is_dead_lettered(
    engine: Engine,
) -> None:
    engine.publish([b"a", b"huge", b"b"])
    engine.wait_caught_up()
    assert sorted(engine.values("out")) == [b"a", b"b"]
    letters = [
        DeadLetter.from_message(m.key(), m.value(), m.headers() or [])
        for m in read_topic(engine.settings.bootstrap_servers, engine.topics["dead"].name)
    ]
    assert [letter.value for letter in letters] == [b"huge"]
    assert "over the limit of 1,000,000 bytes per record" in letters[0].reason
