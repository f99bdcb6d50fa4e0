"""Updates that wait for their insert: one small record each, found by time on the tick."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from driftline.agents.driver import DriverPartition, Input, ProcessorDriver
from driftline.agents.merge import MergeProcessor
from driftline.agents.runtime import Outgoing
from driftline.state.partition_tables import EVENTS, PARKED, PARKED_BY_TIME, PARKED_UPDATES
from driftline.state.registered import RegisteredModel
from driftline.state.spec import ModelSpec
from driftline.state.store import Checkpoint, PartitionStore, Write
from driftline.topics.clients import RECORD_MAX_BYTES
from driftline.topics.messages import encode_ingest, ingest_key

SPEC = ModelSpec(
    project_id="shop", model_id="fraud", inputs=("age",), outputs=(), targets=("label",),
    metadata=("note",),
)  # fmt: skip
TIMEOUT_S = 60.0


class CountingStore(PartitionStore):
    """Counts what ``items`` hands out, per table; checks that every record it is given
    fits the broker's limit (it goes to the changelog too)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.read: dict[str, int] = {}

    def items(self, table: str, prefix: bytes = b"", start: bytes = b"") -> Iterator[Any]:
        for pair in super().items(table, prefix, start):
            self.read[table] = self.read.get(table, 0) + 1
            yield pair

    def write(self, writes: Iterable[Write], checkpoint: Checkpoint) -> None:
        writes = list(writes)
        for write in writes:
            assert len(write.key) + len(write.value or b"") <= RECORD_MAX_BYTES
        super().write(writes, checkpoint)


class NoBudget:
    def grant(self, model: str, day: int, partition: int, already: int, wanted: int) -> int:
        return 0

    def publish(self, partition: int, day: int, deleted: Mapping[str, int]) -> None:
        return None


class Partition:
    """Partition 0 of the merge processor in the driver, on a store that counts its reads."""

    def __init__(self, path: Path) -> None:
        processor = MergeProcessor(
            registered_model={SPEC.key: RegisteredModel(SPEC)}.get, ingest_topic="ingest",
            dead_letter_topic="dlq", max_event_bytes=1 << 20, parked_updates_per_event=100,
            parked_update_timeout_s=TIMEOUT_S, bin_partials_topic="partials",
            deletion_batch_size=10, deletion_budget=NoBudget(),
            ingest_partitions=1,
        )  # fmt: skip
        self.driver = ProcessorDriver(processor, path, "ingest")
        self.store = CountingStore(path / "0")
        self.driver.partitions[0] = DriverPartition(self.store)
        self.dead_letters: list[bytes] = []

    def send(self, op: str, event_id: str, columns: dict[str, Any], at_ms: int) -> None:
        value = encode_ingest(op, "shop", "fraud", event_id, columns)
        self.driver.now_ms = at_ms
        self.keep(self.driver.send([Input(ingest_key("shop", "fraud", event_id), value)]))

    def tick(self, now_ms: int) -> None:
        self.store.read.clear()
        self.driver.now_ms = now_ms
        self.keep(self.driver.tick())

    def keep(self, outgoing: list[Outgoing]) -> None:
        self.dead_letters += [out.value or b"" for out in outgoing if out.topic == "dlq"]


@pytest.fixture
def partition(tmp_path: Path) -> Iterator[Partition]:
    created = Partition(tmp_path)
    yield created
    created.driver.close()


def test_each_waiting_update_is_a_record_of_its_own(partition: Partition) -> None:
    for i in range(20):
        partition.send("update", "late", {"note": str(i) * 60_000}, at_ms=1_000 + i)
    records = list(partition.store.items(PARKED_UPDATES.name))
    assert len(records) == 20
    (summary,) = partition.store.items(PARKED.name)
    assert len(summary[1]) < 1_000  # offsets and times only, however large the updates
    partition.send("insert", "late", {"age": 3}, at_ms=5_000)
    assert list(partition.store.items(PARKED_UPDATES.name)) == []
    assert list(partition.store.items(PARKED_BY_TIME.name)) == []
    (stored,) = partition.store.items(EVENTS.name)
    assert b'"note":"' + b"19" * 60_000 in stored[1]


def test_the_tick_reads_only_the_updates_whose_wait_is_over(partition: Partition) -> None:
    waiting = 500
    for i in range(waiting):
        partition.send("update", f"e{i}", {"label": 1}, at_ms=10_000 + i * 1_000)
    timeout_ms = int(TIMEOUT_S * 1000)
    partition.tick(now_ms=10_000 + timeout_ms + 4_500)  # the first five are due
    assert len(partition.dead_letters) == 5
    assert partition.store.read.get(PARKED_BY_TIME.name, 0) <= 6
    assert partition.store.read.get(PARKED.name, 0) == 0  # no scan of every waiting event
    partition.tick(now_ms=10_000 + timeout_ms + 4_500)
    assert len(partition.dead_letters) == 5  # each once
    remaining = list(partition.store.items(PARKED_BY_TIME.name))
    assert len(remaining) == waiting - 5
