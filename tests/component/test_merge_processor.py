"""The merge processor through the ``ProcessorDriver``: messages in, tables and outputs out.

Each test sends what a producer would put on the ingest topic, on a real partition store,
and checks the tables as the next batch would read them and the messages the processor
sends (dead letters, forwarded messages, bin snapshots). Deletions have their own module
(``test_deletions_processor``), the layout of waiting updates too (``test_parked_updates``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from driftline.agents.driver import Input, ProcessorDriver
from driftline.agents.merge import MergeProcessor
from driftline.agents.runtime import Outgoing
from driftline.state.bin_totals import DELTA_FORMAT, DONE_FORMAT, STAGED_FORMAT
from driftline.state.bins import BIN_KEY, HOUR_MS, ContributionRules, bins_of, hour_of
from driftline.state.commands import event_key
from driftline.state.counters import ModelCounters
from driftline.state.events import StoredEvent
from driftline.state.partition_tables import (
    COUNTERS,
    DELETED_PER_DAY,
    DELETIONS,
    DELETIONS_WAITING,
    EVENTS,
    HELD_BINS,
    HOURS,
    MARKED,
    PARKED,
    PARKED_BY_TIME,
    PARKED_UPDATES,
)
from driftline.state.registered import RegisteredModel
from driftline.state.spec import ModelSpec
from driftline.state.store import PartitionStore
from driftline.state.tables import PartitionTransaction, Table
from driftline.topics.bin_partials import BIN_PARTIAL, LABEL_ARRIVAL
from driftline.topics.dead_letters import REASON
from driftline.topics.messages import (
    FORWARDED_FROM,
    encode_ingest,
    encode_rebuild_bins,
    ingest_key,
)
from driftline.topics.partitioning import partition_for

SPEC = ModelSpec(
    project_id="shop", model_id="fraud", inputs=("age",), outputs=("score",),
    targets=("label",), metadata=("note",),
)  # fmt: skip
MODEL = SPEC.key
PARTITIONS = 4
TIMEOUT_S = 60.0
T0 = 1_700_000_000_000
INGEST, DEAD, PARTIALS = "ingest", "dlq", "partials"
BINS_PARTITIONS = 3


class NoDeletions:
    def grant(self, model: str, day: int, partition: int, already: int, wanted: int) -> int:
        return 0

    def publish(self, partition: int, day: int, deleted: Mapping[str, int]) -> None:
        return None


class CountingRegistry:
    """The model registry, counting the lookups the processor makes."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    def __call__(self, model: str) -> RegisteredModel | None:
        self.lookups.append(model)
        return RegisteredModel(SPEC) if model == MODEL else None


@pytest.fixture
def registry() -> CountingRegistry:
    return CountingRegistry()


@pytest.fixture
def driver(tmp_path: Path, registry: CountingRegistry) -> Iterator[ProcessorDriver]:
    processor = MergeProcessor(
        registered_model=registry, ingest_topic=INGEST, dead_letter_topic=DEAD,
        max_event_bytes=1 << 20, parked_updates_per_event=3, parked_update_timeout_s=TIMEOUT_S,
        bin_partials_topic=PARTIALS, deletion_batch_size=10, deletion_budget=NoDeletions(),
        ingest_partitions=PARTITIONS, bins_partitions=BINS_PARTITIONS,
    )  # fmt: skip
    created = ProcessorDriver(processor, tmp_path, INGEST, now_ms=T0)
    yield created
    created.close()


def home(event_id: str, model_id: str = "fraud") -> int:
    return partition_for(ingest_key("shop", model_id, event_id), PARTITIONS)


# Another event of partition home("e1").
NEIGHBOUR = next(f"e{i}" for i in range(2, 1000) if home(f"e{i}") == home("e1"))


def message(op: str, event_id: str, columns: dict[str, Any] | None = None,
            model_id: str = "fraud", at_ms: int | None = None) -> Input:  # fmt: skip
    value = encode_ingest(op, "shop", model_id, event_id, columns, at_ms)
    return Input(ingest_key("shop", model_id, event_id), value)


def send(driver: ProcessorDriver, *inputs: Input, event_id: str = "e1") -> list[Outgoing]:
    """Send to the partition the event's key belongs to."""
    return driver.send(inputs, home(event_id))


def stored(driver: ProcessorDriver, table: Table[Any, Any], key: Any, event_id: str = "e1") -> Any:
    return PartitionTransaction(driver.store(home(event_id))).get(table, key)


def event(driver: ProcessorDriver, event_id: str = "e1") -> StoredEvent | None:
    found: StoredEvent | None = stored(driver, EVENTS, event_key(MODEL, event_id), event_id)
    return found


def counters(driver: ProcessorDriver, partition: int, model: str = MODEL) -> ModelCounters:
    return PartitionTransaction(driver.store(partition)).get(COUNTERS, model) or ModelCounters()


MERGE_TABLES = (EVENTS, PARKED, PARKED_UPDATES, PARKED_BY_TIME, HOURS, COUNTERS, DELETIONS,
                DELETIONS_WAITING, DELETED_PER_DAY)  # fmt: skip


def contents(store: PartitionStore) -> dict[str, list[tuple[bytes, bytes]]]:
    """Every record of the merge stage's tables, as the store holds them."""
    return {table.name: list(store.items(table.name)) for table in MERGE_TABLES}


def dead(outgoing: list[Outgoing]) -> list[Outgoing]:
    return [out for out in outgoing if out.topic == DEAD]


def test_insert_update_and_delete(driver: ProcessorDriver) -> None:
    outgoing = send(driver, message("insert", "e1", {"age": 3, "score": 0.5}, at_ms=T0))
    assert [out.topic for out in outgoing] == [PARTIALS]  # the event's bin share
    send(driver, message("update", "e1", {"label": 1, "age": 99}))
    found = event(driver)
    assert found is not None
    assert found.columns == {"age": 3, "score": 0.5, "label": 1}
    assert counters(driver, home("e1")).dropped_fields == {"age": 1}
    send(driver, message("delete", "e1"))
    assert event(driver) is None


def test_updates_wait_for_their_insert_then_apply_in_order(driver: ProcessorDriver) -> None:
    send(driver, message("update", "e1", {"label": 0}), message("update", "e1", {"note": "x"}))
    assert event(driver) is None
    assert len(stored(driver, PARKED, event_key(MODEL, "e1"))) == 2
    send(driver, message("insert", "e1", {"age": 3}), message("update", "e1", {"label": 1}))
    found = event(driver)
    assert found is not None
    assert found.columns == {"age": 3, "label": 1, "note": "x"}
    assert stored(driver, PARKED, event_key(MODEL, "e1")) is None
    assert stored(driver, PARKED_UPDATES, (event_key(MODEL, "e1"), 0)) is None


def test_a_waiting_update_expires_on_the_tick_once_the_clock_passes_the_timeout(
    driver: ProcessorDriver,
) -> None:
    partition = home("e1")
    send(driver, message("update", "e1", {"label": 0}))
    driver.now_ms = T0 + int(TIMEOUT_S * 1000) - 1
    assert driver.tick(partition) == []
    driver.now_ms = T0 + int(TIMEOUT_S * 1000)
    (letter,) = dead(driver.tick(partition))
    assert letter.key == ingest_key("shop", "fraud", "e1")
    assert b"its insert never arrived" in dict(letter.headers or [])[REASON]
    assert stored(driver, PARKED, event_key(MODEL, "e1")) is None
    assert counters(driver, partition).dead_letters == 1
    assert driver.tick(partition) == []  # once


def test_a_redelivered_batch_changes_nothing_and_sends_nothing(driver: ProcessorDriver) -> None:
    partition = home("e1")
    batch = [
        driver.message(partition, message("update", "e1", {"label": 1})),
        driver.message(partition, message("insert", "e1", {"age": 3})),
        driver.message(partition, message("update", "e1", {"note": "n"})),
        driver.message(partition, message("insert", NEIGHBOUR, {"age": 1})),
        driver.message(partition, message("update", NEIGHBOUR, {"label": 0})),
    ]
    driver.process(batch, partition)
    before = contents(driver.store(partition))
    assert driver.process(batch, partition) == []
    assert contents(driver.store(partition)) == before


def test_a_message_on_the_wrong_partition_is_forwarded_to_its_own(
    driver: ProcessorDriver,
) -> None:
    wrong = (home("e1") + 1) % PARTITIONS
    sent = message("insert", "e1", {"age": 3})
    (forwarded,) = driver.send([sent], wrong)
    assert (forwarded.topic, forwarded.partition) == (INGEST, home("e1"))
    assert (forwarded.key, forwarded.value) == (sent.key, sent.value)
    assert dict(forwarded.headers or [])[FORWARDED_FROM] == f"{wrong}:0".encode()
    assert forwarded.timestamp == T0
    assert counters(driver, wrong).forwarded == 1
    assert PartitionTransaction(driver.store(wrong)).get(EVENTS, event_key(MODEL, "e1")) is None


def test_dead_letters_are_counted_per_model(driver: ProcessorDriver) -> None:
    partition = home("e1")
    malformed = [Input(ingest_key("shop", "fraud", "e1"), b"not json"), Input(b"nokey", b"{}")]
    assert len(dead(driver.send(malformed, partition))) == 2
    assert counters(driver, partition).dead_letters == 1
    assert counters(driver, partition, "-").dead_letters == 1
    elsewhere = home("e1", "unknown")
    unknown = message("insert", "e1", {"age": 1}, model_id="unknown")
    assert len(dead(driver.send([unknown], elsewhere))) == 1
    assert counters(driver, elsewhere, "shop/unknown").dead_letters == 1
    poison = driver.message(partition, message("insert", "e1", {"age": 2}))
    (letter,) = driver.dead_letter(poison, "the engine could not apply it")
    assert dict(letter.headers or [])[REASON] == b"the engine could not apply it"
    assert counters(driver, partition).dead_letters == 2


def test_the_registry_is_asked_once_per_model_a_batch_names(
    driver: ProcessorDriver, registry: CountingRegistry
) -> None:
    """Not one per message: the batch's models are resolved before the merge rules run."""
    partition = home("e1")
    driver.send([message("insert", "e1", {"age": i}) for i in range(2)], partition)
    few = len(registry.lookups)
    registry.lookups.clear()
    driver.send([message("insert", "e1", {"age": i}) for i in range(2, 50)], partition)
    assert len(registry.lookups) == few
    registry.lookups.clear()
    nope = home("e1", "nope")
    driver.send([message("insert", "e1", {"age": 1}, model_id="nope")] * 3, nope)
    assert registry.lookups == ["shop/nope"]


def test_a_snapshot_carries_the_earliest_arrival_of_the_labels_it_took(
    driver: ProcessorDriver,
) -> None:
    """The label-to-emission latency starts at a label's Kafka timestamp: the snapshot of
    the bin it changed carries the earliest of a batch's (a header); no label, no header."""
    inserted = send(driver, message("insert", "e1", {"age": 30, "score": 0.9}, at_ms=T0))
    assert [out.headers for out in inserted if out.topic == PARTIALS] == [None]
    later = send(
        driver,
        Input(*_update_label("e1", 1), timestamp_ms=T0 + 5_000),
        Input(*_update_label("e1", 0), timestamp_ms=T0 + 7_000),
        message("update", "e1", {"note": "metadata is no label"}),
    )
    headers = [out.headers for out in later if out.topic == PARTIALS]
    assert headers == [[(LABEL_ARRIVAL, str(T0 + 5_000).encode())]]
    metadata_only = send(driver, message("update", "e1", {"note": "again"}))
    assert all(out.headers is None for out in metadata_only if out.topic == PARTIALS)


def _update_label(event_id: str, label: int) -> tuple[bytes, bytes]:
    sent = message("update", event_id, {"label": label})
    return sent.key or b"", sent.value or b""


def test_rebuild_bins_recomputes_every_share_from_the_stored_events(
    driver: ProcessorDriver,
) -> None:
    """``rebuild_bins`` (``driftline replay bins``) sends the partition's shares of the
    model whole, as snapshots: the batch recomputation of the events it stores, the
    batch's own changes included; a bin it once sent a delta of and has no event left in
    gets an empty share; every share is sent, changed or not, and no delta."""
    partition = home("e1")
    neighbours = [f"e{i}" for i in range(2, 400) if home(f"e{i}") == partition][:5]
    for number, event_id in enumerate(["e1", *neighbours]):
        at_ms = T0 + (number % 3) * HOUR_MS
        send(driver, message("insert", event_id, {"age": 20 + number, "score": 0.4}, at_ms=at_ms))
    store = driver.store(partition)
    emptied = PartitionTransaction(store)
    emptied.set(HELD_BINS, (MODEL, hour_of(T0) - 5), MARKED)  # sent once, no event left
    store.write(emptied.writes(), store.checkpoint())
    rebuild = Input(MODEL.encode(), encode_rebuild_bins("shop", "fraud"))
    late = message("insert", neighbours[0], {"age": 70, "score": 0.4}, at_ms=T0 + 4 * HOUR_MS)
    outgoing = driver.send([late, rebuild], partition)

    rules = {MODEL: ContributionRules(SPEC, None)}
    events = PartitionTransaction(store).items(EVENTS, prefix=f"{MODEL}/".encode())
    expected = bins_of(rules, ((MODEL, stored_event) for _, stored_event in events))
    records = [
        (BIN_KEY.decode(out.key or b""), BIN_PARTIAL.decode(out.value or b""))
        for out in outgoing
        if out.topic == PARTIALS
    ]
    assert not [record for _, record in records if record.delta]
    sent = {key: record.share.counters for key, record in records}
    assert sent == {**expected, (MODEL, hour_of(T0) - 5): {}}
    assert len(sent) == len(records)
    held = {key for key, _ in PartitionTransaction(store).items(HELD_BINS)}
    assert held == set(sent)


def test_rebuild_bins_into_a_generation_sends_deltas_the_generation_and_the_word_it_is_whole(
    driver: ProcessorDriver,
) -> None:
    """With a generation, the batch's own changes still go as deltas (the bins in use
    take them until the generation is complete); the shares go into the generation,
    then the partition's word, to every bins partition, that it sent them all."""
    partition = home("e1")
    send(driver, message("insert", "e1", {"age": 20, "score": 0.4}))
    late = message("insert", "e1", {"age": 70, "score": 0.4}, at_ms=T0 + HOUR_MS)
    rebuild = Input(MODEL.encode(), encode_rebuild_bins("shop", "fraud", generation=42))
    outgoing = [out for out in driver.send([late, rebuild], partition) if out.topic == PARTIALS]
    records = [(out, BIN_PARTIAL.decode(out.value or b"")) for out in outgoing]
    kinds = [record.kind for _, record in records]
    assert kinds == [DELTA_FORMAT] * 2 + [STAGED_FORMAT] * 2 + [DONE_FORMAT] * BINS_PARTITIONS
    rules = {MODEL: ContributionRules(SPEC, None)}
    events = PartitionTransaction(driver.store(partition)).items(
        EVENTS, prefix=f"{MODEL}/".encode()
    )
    expected = bins_of(rules, ((MODEL, stored_event) for _, stored_event in events))
    staged = {
        BIN_KEY.decode(out.key or b""): record.share.counters
        for out, record in records
        if record.kind == STAGED_FORMAT
    }
    assert staged == {**expected, (MODEL, hour_of(T0)): {}}  # the event moved out of it
    assert {record.generation for _, record in records if record.kind != DELTA_FORMAT} == {42}
    words = [(out.key, out.partition, record.partitions) for out, record in records[-3:]]
    assert words == [(MODEL.encode(), b, PARTITIONS) for b in range(BINS_PARTITIONS)]


def test_rebuild_bins_of_an_unregistered_model_is_dead_lettered(driver: ProcessorDriver) -> None:
    rebuild = Input(b"shop/nope", encode_rebuild_bins("shop", "nope"))
    outgoing = driver.send([rebuild], 0)
    assert [out.headers for out in dead(outgoing)] != []
    assert not [out for out in outgoing if out.topic == PARTIALS]
