"""Deletion requests in the merge processor: by ids, by time range in steps, under a daily cap.

The processor runs through the ``ProcessorDriver`` on a real partition store (RocksDB in a
temporary directory) with messages as the broker would deliver them; its continuation
messages are fed back to it as the ingest topic would. What is checked is computed apart
from the processor: the expected survivors from the published rows, the expected bins
with ``bins_of``, the hour index from the events table.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftline.agents.driver import Input, ProcessorDriver
from driftline.agents.merge import MergeProcessor
from driftline.agents.runtime import Outgoing
from driftline.state.baseline import profile_baseline
from driftline.state.bins import HOUR_MS, ContributionRules, Counters, bins_of
from driftline.state.deletions import DAY_MS, DeletionRecord, DeletionState
from driftline.state.events import StoredEvent
from driftline.state.hour_index import index_key
from driftline.state.partition_tables import DELETIONS, DELETIONS_WAITING, EVENTS, HOURS
from driftline.state.registered import RegisteredModel
from driftline.state.spec import ColumnType, ModelSpec, Task
from driftline.state.tables import PartitionTransaction
from driftline.topics.messages import (
    deletion_key,
    encode_delete_ids,
    encode_delete_range,
    encode_ingest,
    ingest_key,
)
from tests.support.bins_stage import SentShares

INGEST = "ingest"
SPEC = ModelSpec(
    project_id="shop",
    model_id="fraud",
    inputs=("amount",),
    outputs=("score",),
    targets=("label",),
    task=Task.BINARY_CLASSIFICATION,
    column_types={"amount": ColumnType.FLOAT, "score": ColumnType.FLOAT},
)
MODEL = SPEC.key
REGISTERED = RegisteredModel(
    SPEC, profile_baseline(SPEC, [{"amount": i, "score": i / 100} for i in range(100)])
)
RULES = {MODEL: ContributionRules(SPEC, REGISTERED.baseline)}
HOUR0 = 1_700_000_000_000 // HOUR_MS * HOUR_MS
RUNNING, DONE = DeletionState.RUNNING, DeletionState.DONE
WAITING_FOR_DAILY_CAP = DeletionState.WAITING_FOR_DAILY_CAP


class MemoryBudget:
    """The Redis budget's rule in a dict: per model and day, each partition's own count."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.fields: dict[tuple[str, int], dict[int, int]] = {}
        self.answers = True

    def grant(self, model: str, day: int, partition: int, already: int, wanted: int) -> int | None:
        if not self.answers:
            return None
        fields = self.fields.setdefault((model, day), {})
        others = sum(count for p, count in fields.items() if p != partition)
        granted = max(0, min(wanted, self.cap - others - already))
        fields[partition] = already + granted
        return granted

    def publish(self, partition: int, day: int, deleted: Mapping[str, int]) -> None:
        for model, count in deleted.items():
            self.fields.setdefault((model, day), {})[partition] = count


class Partition:
    """One ingest partition in the driver: its log, consumed batch by batch, continuations
    fed back to it; the driver's clock is the processor's only one."""

    def __init__(self, path: Path, batch_size: int = 100_000, cap: int = 10**9) -> None:
        self.budget = MemoryBudget(cap)
        processor = MergeProcessor(
            registered_model={MODEL: REGISTERED}.get, ingest_topic=INGEST, dead_letter_topic="dlq",
            max_event_bytes=1 << 20, parked_updates_per_event=10, parked_update_timeout_s=60,
            bin_partials_topic="partials", deletion_batch_size=batch_size,
            deletion_budget=self.budget, ingest_partitions=1,
        )  # fmt: skip
        self.driver = ProcessorDriver(processor, path, INGEST, now_ms=int(time.time() * 1000))
        self.store = self.driver.store(0)
        self.log = self.driver.partition(0).log
        self.position = 0
        self.dead_letters: list[Outgoing] = []
        self.sent = SentShares()

    def send(self, key: bytes, value: bytes) -> None:
        self.driver.message(0, Input(key, value, timestamp_ms=HOUR0))

    def run(self, batch: int = 50) -> None:
        """Consume the log to its end (continuations included), ``batch`` messages at a time."""
        while self.position < len(self.log):
            messages = self.log[self.position : self.position + batch]
            self.position += len(messages)
            self.apply(self.driver.process(messages))

    def tick(self, now_ms: int) -> None:
        self.driver.now_ms = now_ms
        self.apply(self.driver.tick())

    def apply(self, outgoing: list[Outgoing]) -> None:
        self.sent.add(outgoing, topic="partials")
        for out in outgoing:
            if out.topic == INGEST:
                assert out.key is not None
                assert out.value is not None
                self.send(out.key, out.value)
            elif out.topic == "dlq":
                self.dead_letters.append(out)

    def tables(self) -> PartitionTransaction:
        """The partition's tables as the last batch left them."""
        return PartitionTransaction(self.store)

    def events(self) -> dict[str, StoredEvent]:
        return {event.event_id: event for _, event in self.tables().items(EVENTS)}

    def bins(self) -> dict[Any, Counters]:
        """The partition's share of each bin, summed from the records it sent."""
        return self.sent.shares()

    def record(self, deletion_id: str) -> DeletionRecord:
        record = self.tables().get(DELETIONS, deletion_id)
        assert record is not None
        return record

    def waiting(self) -> list[str]:
        return [deletion_id for deletion_id, _ in self.tables().items(DELETIONS_WAITING)]


@pytest.fixture
def partition(tmp_path: Path) -> Iterator[Partition]:
    created = Partition(tmp_path / "p0", batch_size=7)
    yield created
    created.driver.close()


def publish(partition: Partition, rows: list[tuple[str, int]], label: bool = False) -> None:
    for event_id, timestamp in rows:
        columns = {"amount": 5.0, "score": 0.7, "label": 1 if label else None}
        value = encode_ingest("insert", "shop", "fraud", event_id, columns, timestamp)
        partition.send(ingest_key("shop", "fraud", event_id), value)


def delete_range(
    partition: Partition, deletion_id: str, start: int, end: int, metrics: bool
) -> None:
    value = encode_delete_range("shop", "fraud", deletion_id, start, end, metrics)
    partition.send(deletion_key("shop", "fraud"), value)


def rows_over_hours(count: int, hours: int, seed: int = 1) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(f"e{i}", HOUR0 + rng.randrange(hours * HOUR_MS)) for i in range(count)]


def test_a_range_deletion_runs_in_steps_and_retracts_exactly(partition: Partition) -> None:
    rows = rows_over_hours(60, 5)
    publish(partition, rows)
    start, end = HOUR0 + HOUR_MS, HOUR0 + 3 * HOUR_MS
    delete_range(partition, "d1", start, end, metrics=True)
    partition.run()

    survivors = {i: t for i, t in rows if not start <= t < end}
    assert {i: e.timestamp_ms for i, e in partition.events().items()} == survivors
    record = partition.record("d1")
    assert (record.state, record.deleted) == (DONE, len(rows) - len(survivors))
    # Steps of 7 events: the continuations the processor sent itself show it went in steps.
    continuations = [m for m in partition.log if b"delete_continue" in (m.value() or b"")]
    assert len(continuations) == (len(rows) - len(survivors)) // 7
    expected = bins_of(RULES, [(MODEL, e) for e in partition.events().values()])
    assert partition.bins() == expected


def test_without_update_metrics_the_bins_keep_their_values(partition: Partition) -> None:
    publish(partition, rows_over_hours(40, 3))
    partition.run()
    bins_before = partition.bins()
    delete_range(partition, "d1", HOUR0, HOUR0 + 3 * HOUR_MS, metrics=False)
    partition.run()
    assert partition.events() == {}
    assert partition.bins() == bins_before
    assert partition.record("d1").deleted == 40


def test_ingestion_goes_on_between_the_steps(partition: Partition) -> None:
    """Inserts published after the request are interleaved with its steps and kept when
    they fall outside the range."""
    publish(partition, rows_over_hours(30, 2))
    delete_range(partition, "d1", HOUR0, HOUR0 + 2 * HOUR_MS, metrics=True)
    partition.run(batch=5)  # the request and the first step
    publish(partition, [(f"late{i}", HOUR0 + 2 * HOUR_MS + i) for i in range(10)])
    partition.run(batch=5)
    assert sorted(partition.events()) == sorted(f"late{i}" for i in range(10))
    assert partition.record("d1").deleted == 30


def test_the_daily_cap_pauses_a_deletion_until_the_next_utc_day(tmp_path: Path) -> None:
    partition = Partition(tmp_path / "p", batch_size=4, cap=10)
    publish(partition, rows_over_hours(18, 2))
    delete_range(partition, "d1", HOUR0, HOUR0 + 2 * HOUR_MS, metrics=True)
    partition.run()
    record = partition.record("d1")
    assert (record.state, record.deleted, len(partition.events())) == (
        WAITING_FOR_DAILY_CAP, 10, 8,
    )  # fmt: skip
    assert partition.waiting() == ["d1"]
    partition.tick(now_ms=(record.capped_day + 0) * DAY_MS + 1000)  # same day: nothing
    partition.run()
    assert partition.record("d1").state == WAITING_FOR_DAILY_CAP
    partition.tick(now_ms=(record.capped_day + 1) * DAY_MS + 1000)  # the clock moves on
    assert partition.record("d1").state == RUNNING
    partition.run()
    assert (partition.record("d1").state, partition.record("d1").deleted) == (DONE, 18)
    assert partition.waiting() == []
    assert partition.events() == {}
    partition.driver.close()


def test_a_step_that_cannot_check_the_cap_waits_for_the_next_tick(tmp_path: Path) -> None:
    partition = Partition(tmp_path / "p", batch_size=4)
    publish(partition, rows_over_hours(10, 2))
    partition.budget.answers = False  # Redis is down
    delete_range(partition, "d1", HOUR0, HOUR0 + 2 * HOUR_MS, metrics=True)
    partition.run()
    record = partition.record("d1")
    assert (record.state, record.deleted, record.deferred) == (RUNNING, 0, True)
    assert len(partition.events()) == 10
    partition.tick(now_ms=partition.driver.now_ms)
    partition.run()
    assert partition.record("d1").deleted == 0  # still down: deferred again
    partition.budget.answers = True
    partition.tick(now_ms=partition.driver.now_ms)
    partition.run()
    assert (partition.record("d1").state, partition.record("d1").deleted) == (DONE, 10)
    assert partition.waiting() == []
    partition.driver.close()


def test_the_daily_counts_come_back_after_redis_is_wiped(tmp_path: Path) -> None:
    partition = Partition(tmp_path / "p", batch_size=4, cap=6)
    publish(partition, [(f"e{i}", HOUR0 + (i % 2) * HOUR_MS + i) for i in range(10)])
    delete_range(partition, "d1", HOUR0, HOUR0 + HOUR_MS, metrics=True)
    partition.run()
    assert partition.record("d1").deleted == 5
    partition.budget.fields.clear()  # FLUSHALL
    partition.tick(now_ms=partition.driver.now_ms)
    day = partition.driver.now_ms // DAY_MS
    assert partition.budget.fields == {(MODEL, day): {0: 5}}
    delete_range(partition, "d2", HOUR0 + HOUR_MS, HOUR0 + 2 * HOUR_MS, metrics=True)
    partition.run()
    assert (partition.record("d2").state, partition.record("d2").deleted) == (
        WAITING_FOR_DAILY_CAP, 1,
    )  # fmt: skip
    partition.driver.close()


def test_delete_by_ids_counts_each_event_once_and_ignores_a_redelivery(
    partition: Partition,
) -> None:
    publish(partition, [(f"e{i}", HOUR0 + i) for i in range(10)])
    ids = ["e1", "e2", "e2", "missing"]
    message = encode_delete_ids("shop", "fraud", "d1", ids, True)
    partition.send(deletion_key("shop", "fraud"), message)
    partition.run()
    partition.apply(partition.driver.process([partition.log[-1]]))  # redelivered
    assert sorted(partition.events()) == sorted(f"e{i}" for i in range(10) if i not in (1, 2))
    record = partition.record("d1")
    assert (record.kind, record.commands, record.deleted, record.state) == ("ids", 1, 2, DONE)


def test_a_deletion_for_an_unregistered_model_is_dead_lettered(partition: Partition) -> None:
    partition.send(b"shop/nope", encode_delete_range("shop", "nope", "d1", 0, HOUR_MS, True))
    partition.run()
    assert len(partition.dead_letters) == 1
    assert partition.tables().get(DELETIONS, "d1") is None


operations = st.lists(
    st.tuples(
        st.sampled_from(["insert", "move", "label", "delete"]),
        st.integers(0, 8),
        st.integers(0, 4 * HOUR_MS),
    ),
    max_size=40,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(operations, st.integers(1, 10))
def test_the_hour_index_always_matches_the_events_table(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]], batch: int
) -> None:
    partition = Partition(tmp_path_factory.mktemp("index"))
    for op, number, offset_ms in ops:
        event_id, timestamp = f"e{number}", HOUR0 + offset_ms
        key = ingest_key("shop", "fraud", event_id)
        if op == "insert":
            value = encode_ingest("insert", "shop", "fraud", event_id, {"amount": 1.0}, timestamp)
        elif op == "move":
            value = encode_ingest("update", "shop", "fraud", event_id, {}, timestamp)
        elif op == "label":
            value = encode_ingest("update", "shop", "fraud", event_id, {"label": 1})
        else:
            value = encode_ingest("delete", "shop", "fraud", event_id)
        partition.send(key, value)
    partition.run(batch)
    indexed = {key for key, _ in partition.tables().items(HOURS)}
    assert indexed == {index_key(MODEL, event) for event in partition.events().values()}
    partition.driver.close()


def test_a_range_deletes_from_its_start_inclusive_to_its_end_exclusive(
    partition: Partition,
) -> None:
    start, end = HOUR0 + HOUR_MS, HOUR0 + 2 * HOUR_MS
    edges = {"before": start - 1, "first": start, "last": end - 1, "after": end}
    publish(partition, list(edges.items()))
    delete_range(partition, "d1", start, end, metrics=True)
    partition.run()
    assert sorted(partition.events()) == ["after", "before"]


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"shop/fraud", b'{"op": "delete_range", "project_id": "shop", "model_id": "fraud", '
         b'"deletion_id": "d1", "start_time": 7, "end_time": 7}', "start_time < end_time"),
        (b"shop/fraud", b'{"op": "delete_ids", "project_id": "shop", "model_id": "fraud", '
         b'"deletion_id": "d1", "event_ids": ["a", 3]}', "a list of non-empty strings"),
        (b"shop/fraud/a", b'{"op": "delete_continue", "project_id": "shop", '
         b'"model_id": "fraud", "deletion_id": "d1"}', "must be keyed 'shop/fraud'"),
        (b"shop/fraud", b'{"op": "delete_range", "project_id": "shop", "model_id": "fraud", '
         b'"start_time": 0, "end_time": 7}', "needs 'deletion_id'"),
    ],
)  # fmt: skip
def test_a_malformed_deletion_request_is_dead_lettered_with_its_reason(
    partition: Partition, key: bytes, value: bytes, reason: str
) -> None:
    publish(partition, [("kept", HOUR0)])
    partition.send(key, value)
    partition.run()
    (letter,) = partition.dead_letters
    assert letter.value == value
    assert reason in dict(letter.headers or [])["driftline.reason"].decode()
    assert list(partition.events()) == ["kept"]
    assert partition.tables().get(DELETIONS, "d1") is None
