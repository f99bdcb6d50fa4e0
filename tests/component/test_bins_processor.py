"""Stage 2 of the bins (``BinTotalsProcessor``) through the ``ProcessorDriver``: the
partitions' deltas folded into their shares and the shares summed into bins, each delta
counted once, the newest snapshot per partition kept, emissions coalesced, empty bins as
tombstones, dead letters."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from driftline.agents.bin_totals import BinTotalsProcessor
from driftline.agents.driver import Input, ProcessorDriver
from driftline.agents.runtime import Outgoing, handled
from driftline.state import exact_json
from driftline.state.bin_totals import DELTA_FORMAT, DONE_FORMAT, STAGED_FORMAT, Share
from driftline.state.bins import BIN_KEY, HOUR_MS, BinKey, ContributionRules, Counters, bins_of
from driftline.state.events import EventChange
from driftline.state.metrics import bin_metrics
from driftline.state.partition_tables import (
    DELTAS,
    DIRTY,
    GENERATION_DONE,
    GENERATIONS,
    SHARES,
    STAGED,
)
from driftline.state.registered import RegisteredModel
from driftline.state.store import store_key
from driftline.state.tables import TEXT, PartitionTransaction
from driftline.topics.bin_partials import BIN_PARTIAL, BinPartial, label_header
from driftline.topics.dead_letters import REASON
from driftline.topics.model_bins import MODEL_BIN
from tests.support.bins_stage import HOUR, MODEL, IngestPartition, event, inserted

INTERVAL_MS = 500
START_MS = 1_000_000
BIN = (MODEL, HOUR)


def bins_processor(registered: RegisteredModel) -> BinTotalsProcessor:
    return BinTotalsProcessor(
        {MODEL: registered}.get, "metrics", "model-bins", INTERVAL_MS / 1000, "dlq"
    )


@pytest.fixture
def driver(registered: RegisteredModel, tmp_path: Path) -> Iterator[ProcessorDriver]:
    processor = bins_processor(registered)
    driver = ProcessorDriver(processor, tmp_path / "bins", "bin-partials", now_ms=START_MS)
    yield driver
    driver.close()


def snapshot(partition: int, version: int, counters: Counters, bin_key: BinKey = BIN) -> Input:
    value = BIN_PARTIAL.encode(BinPartial(partition, Share(version, counters)))
    return Input(BIN_KEY.encode(bin_key), value)


def delta(partition: int, version: int, counters: Counters, bin_key: BinKey = BIN) -> Input:
    value = BIN_PARTIAL.encode(BinPartial(partition, Share(version, counters), DELTA_FORMAT))
    return Input(BIN_KEY.encode(bin_key), value)


def staged(
    partition: int, generation: int, version: int, counters: Counters, bin_key: BinKey = BIN
) -> Input:
    record = BinPartial(partition, Share(version, counters), STAGED_FORMAT, generation)
    return Input(BIN_KEY.encode(bin_key), BIN_PARTIAL.encode(record))


def done(partition: int, generation: int, version: int, partitions: int) -> Input:
    record = BinPartial(partition, Share(version), DONE_FORMAT, generation, partitions)
    return Input(MODEL.encode(), BIN_PARTIAL.encode(record))


def forwarded(snapshots: Sequence[Outgoing]) -> list[Input]:
    """Stage 1's snapshots as the bins processor receives them."""
    return [Input(out.key, out.value) for out in snapshots]


def emitted(outgoing: Sequence[Outgoing]) -> dict[BinKey, dict[str, Any] | None]:
    """The metrics records sent, by bin: the bin's JSON, or None for a tombstone. Each
    went to the alert evaluator's input too, keyed by its model, with the same document."""
    assert {out.topic for out in outgoing} <= {"metrics", "model-bins"}
    metrics = {
        BIN_KEY.decode(out.key or b""): None if out.value is None else exact_json.loads(out.value)
        for out in outgoing
        if out.topic == "metrics"
    }
    by_model = {}
    for out in outgoing:
        if out.topic == "model-bins":
            record = MODEL_BIN.decode(out.value or b"")
            by_model[(TEXT.decode(out.key or b""), record.hour)] = record.value
    assert by_model == metrics
    return metrics


def dirty(driver: ProcessorDriver) -> list[BinKey]:
    return [key for key, _ in PartitionTransaction(driver.store()).items(DIRTY)]


def test_shares_of_several_partitions_sum_to_the_batch_recomputation(
    driver: ProcessorDriver,
    ingest_partition: Callable[[int], IngestPartition],
    registered: RegisteredModel,
) -> None:
    """Three ingest partitions insert, label and delete events of two hours; the bins
    emitted last equal the bins recomputed from the final events, metrics included."""
    partitions = [ingest_partition(n) for n in range(3)]
    events = {n: [event(10 * n + i, hour=HOUR + i % 2) for i in range(6)] for n in range(3)}
    sent: list[Input] = []
    for n, partition in enumerate(partitions):
        sent += forwarded(partition.batch(inserted(*events[n])))
    labelled = event(11, hour=HOUR + 1, label=1)
    sent += forwarded(partitions[1].batch([EventChange(MODEL, events[1][1], labelled)]))
    sent += forwarded(partitions[2].batch([EventChange(MODEL, events[2][0], None)]))
    final = [*events[0], events[1][0], labelled, *events[1][2:], *events[2][1:]]

    last = emitted(driver.send(sent[:4]))
    last.update(emitted(driver.send(sent[4:])))
    driver.now_ms += INTERVAL_MS
    last.update(emitted(driver.tick()))

    rules = {MODEL: ContributionRules(registered.spec, registered.baseline)}
    expected = bins_of(rules, [(MODEL, e) for e in final])
    assert {key: found and found["counts"] for key, found in last.items()} == expected
    for (_, hour), counts in expected.items():
        found = last[(MODEL, hour)]
        assert found is not None
        assert found["metrics"] == bin_metrics(registered.spec, registered.baseline, counts)
        assert (found["hour_start_ms"], found["project_id"], found["model_id"]) == (
            hour * HOUR_MS, "shop", "churn",
        )  # fmt: skip
    assert dirty(driver) == []
    # All of it redelivered, newest first: the bins re-emitted, if at all, are the same.
    driver.now_ms += INTERVAL_MS
    again = emitted(driver.send(sent[::-1]))
    driver.now_ms += INTERVAL_MS
    again.update(emitted(driver.tick()))
    for key, found in again.items():
        before = last[key]
        assert found is not None
        assert before is not None
        assert (found["counts"], found["version"]) == (before["counts"], before["version"])


def test_deltas_fold_into_their_share_once_each(driver: ProcessorDriver) -> None:
    """A delta counts once: delivered again (in the same batch or a later one, before or
    after it was folded) it changes nothing; one no newer than a snapshot is in it."""
    first = emitted(driver.send([delta(0, 10, {"n": 2}), delta(1, 4, {"n": 1, "tp": 1})]))[BIN]
    assert first is not None
    assert (first["counts"], first["version"]) == ({"n": 3, "tp": 1}, 14)
    driver.now_ms += 100
    assert (
        driver.send([delta(0, 12, {"n": 1}), delta(0, 12, {"n": 1}), delta(0, 10, {"n": 2})]) == []
    )
    driver.now_ms += INTERVAL_MS
    folded_once = emitted(driver.tick())[BIN]
    assert folded_once is not None
    assert (folded_once["counts"], folded_once["version"]) == ({"n": 4, "tp": 1}, 16)
    shares = dict(PartitionTransaction(driver.store()).items(SHARES))
    assert shares == {
        (MODEL, HOUR, 0): Share(12, {"n": 3}),
        (MODEL, HOUR, 1): Share(4, {"n": 1, "tp": 1}),
    }
    assert dict(PartitionTransaction(driver.store()).items(DELTAS)) == {}
    # A snapshot replaces partition 1's share and the deltas it holds, not a newer one.
    driver.now_ms += INTERVAL_MS
    batch = [delta(1, 6, {"n": 5}), snapshot(1, 8, {"n": 2}), delta(1, 9, {"n": -1, "tp": 1})]
    replaced = emitted(driver.send(batch))[BIN]
    assert replaced is not None
    assert (replaced["counts"], replaced["version"]) == ({"n": 4, "tp": 1}, 21)
    driver.now_ms += INTERVAL_MS
    stale = [delta(1, 7, {"n": 100}), delta(0, 11, {"n": 100}), snapshot(1, 8, {"n": 50})]
    repeated = emitted(driver.send(stale)).get(BIN)
    assert repeated is None or (repeated["counts"], repeated["version"]) == ({"n": 4, "tp": 1}, 21)


def test_a_bin_whose_deltas_sum_to_nothing_is_a_tombstone(driver: ProcessorDriver) -> None:
    driver.send([delta(0, 10, {"n": 1, "tp": 1}), delta(2, 3, {"n": 2})])
    driver.now_ms += INTERVAL_MS
    driver.send([delta(2, 5, {"n": -2})])
    driver.now_ms += INTERVAL_MS
    gone = driver.send([delta(0, 11, {"n": -1, "tp": -1})])
    assert emitted(gone) == {BIN: None}


def test_an_older_or_repeated_snapshot_changes_nothing(driver: ProcessorDriver) -> None:
    """THE stale-snapshot guard: a redelivered or reordered snapshot must not replace the
    newer share its partition already sent (nor may an older one within a batch)."""
    first = emitted(driver.send([snapshot(0, 20, {"n": 5}), snapshot(1, 7, {"n": 1})]))[BIN]
    assert first is not None
    assert (first["counts"], first["version"]) == ({"n": 6}, 27)
    driver.now_ms += INTERVAL_MS  # past the interval: a change would be emitted at once
    assert driver.send([snapshot(0, 20, {"n": 99})]) == []  # repeated
    assert driver.send([snapshot(0, 12, {"n": 99})]) == []  # older
    assert driver.send([snapshot(1, 3, {}), snapshot(1, 6, {"n": 50})]) == []
    assert dirty(driver) == []
    assert driver.tick() == []
    shares = dict(PartitionTransaction(driver.store()).items(SHARES))
    assert shares == {(MODEL, HOUR, 0): Share(20, {"n": 5}), (MODEL, HOUR, 1): Share(7, {"n": 1})}
    # Within one batch, the newest snapshot of a partition wins wherever it stands.
    newest = emitted(driver.send([snapshot(0, 30, {"n": 8}), snapshot(0, 25, {"n": 1})]))[BIN]
    assert newest is not None
    assert (newest["counts"], newest["version"]) == ({"n": 9}, 37)


def test_a_bin_changed_within_its_interval_waits_dirty_for_the_tick(
    driver: ProcessorDriver,
) -> None:
    first = emitted(driver.send([snapshot(0, 10, {"n": 1})]))[BIN]
    assert first is not None
    assert first["emitted_at_ms"] == START_MS  # the runtime's clock, not the processor's
    driver.now_ms += 200
    assert driver.send([snapshot(0, 11, {"n": 2})]) == []
    driver.now_ms += 100
    assert driver.send([snapshot(0, 12, {"n": 3})]) == []
    assert dirty(driver) == [BIN]
    driver.now_ms = START_MS + INTERVAL_MS - 1
    assert driver.tick() == []
    # Another bin is not held back by this one.
    other = (MODEL, HOUR + 1)
    assert list(emitted(driver.send([snapshot(0, 12, {"n": 4}, other)]))) == [other]
    driver.now_ms = START_MS + INTERVAL_MS
    due = emitted(driver.tick())[BIN]
    assert due is not None
    assert (due["counts"], due["version"], due["emitted_at_ms"]) == ({"n": 3}, 12, driver.now_ms)
    assert dirty(driver) == []
    driver.now_ms += 10 * INTERVAL_MS
    assert driver.tick() == []  # emitted once


def test_a_bin_already_dirty_is_not_marked_again(driver: ProcessorDriver) -> None:
    """Under a backlog a bin stays dirty across many batches: each one marking it again
    cost a store write and a changelog record."""
    driver.send([delta(0, 10, {"n": 1})])
    driver.send([delta(0, 11, {"n": 1})])
    assert dirty(driver) == [BIN]
    again = driver.message(0, delta(0, 12, {"n": 1}))
    result = handled(driver.processor, 0, [again], driver.store(), driver.now_ms)
    dirty_prefix = store_key(DIRTY.name, b"")
    assert [w.key for w in result.writes if w.key.startswith(dirty_prefix)] == []
    assert any(w.key.startswith(store_key(DELTAS.name, b"")) for w in result.writes)


def test_a_dirty_bin_outlives_a_restart(registered: RegisteredModel, tmp_path: Path) -> None:
    """The dirty marks are a table: a new processor on the store emits what waited."""
    path = tmp_path / "bins"
    processor = bins_processor(registered)
    before = ProcessorDriver(processor, path, "bin-partials", now_ms=START_MS)
    before.send([snapshot(0, 10, {"n": 1})])
    before.send([snapshot(0, 11, {"n": 2})])
    before.close()
    processor = bins_processor(registered)
    after = ProcessorDriver(processor, path, "bin-partials", now_ms=START_MS + 1)
    due = emitted(after.tick())[BIN]
    after.close()
    assert due is not None
    assert due["counts"] == {"n": 2}


def test_under_a_backlog_the_work_downstream_holds_emissions_back(
    registered: RegisteredModel, tmp_path: Path
) -> None:
    """While the merge stage is behind, the CPU time the threads downstream used counts
    against the emission budget: past its burst, changed bins wait dirty. Once the
    backlog is gone they go out, whatever was spent downstream."""
    backlog = {"behind": True, "downstream_ms": 0.0}

    def downstream_ms() -> float:
        used, backlog["downstream_ms"] = backlog["downstream_ms"], 0.0
        return used

    processor = BinTotalsProcessor(
        {MODEL: registered}.get, "metrics", "model-bins", INTERVAL_MS / 1000, "dlq",
        behind=lambda: bool(backlog["behind"]), downstream_ms=downstream_ms,
    )  # fmt: skip
    driver = ProcessorDriver(processor, tmp_path / "bins", "bin-partials", now_ms=START_MS)
    later, last = (MODEL, HOUR + 1), (MODEL, HOUR + 2)
    assert list(emitted(driver.send([snapshot(0, 10, {"n": 1})]))) == [BIN]
    backlog["downstream_ms"] = 10_000.0  # the projections worked 10 s on what went out
    assert driver.send([snapshot(0, 10, {"n": 1}, later)]) == []
    assert dirty(driver) == [later]
    driver.now_ms += INTERVAL_MS
    assert driver.tick() == []
    backlog["downstream_ms"] = 10_000.0
    backlog["behind"] = False  # the same work downstream, no backlog
    assert list(emitted(driver.send([snapshot(0, 10, {"n": 1}, last)]))) == [last]
    assert list(emitted(driver.tick())) == [later]
    driver.close()


def test_a_bin_whose_shares_are_all_empty_is_a_tombstone(driver: ProcessorDriver) -> None:
    driver.send([snapshot(0, 10, {"n": 1}), snapshot(1, 4, {"n": 2})])
    driver.now_ms += INTERVAL_MS
    left = emitted(driver.send([snapshot(0, 11, {})]))[BIN]
    assert left is not None
    assert left["counts"] == {"n": 2}
    driver.now_ms += INTERVAL_MS
    gone = driver.send([snapshot(1, 5, {})])
    assert gone[0] == Outgoing("metrics", BIN_KEY.encode(BIN), None)
    assert emitted(gone) == {BIN: None}


def test_a_bin_of_an_unregistered_model_has_counts_and_no_metrics(
    driver: ProcessorDriver,
) -> None:
    other = ("shop/other", HOUR)
    found = emitted(driver.send([snapshot(0, 10, {"n": 1}, other)]))[other]
    assert found is not None
    assert found["counts"] == {"n": 1}
    assert "metrics" not in found


def test_messages_without_key_or_value_are_skipped(driver: ProcessorDriver) -> None:
    assert (
        driver.send([Input(None, snapshot(0, 1, {"n": 1}).value), Input(b"shop/x/1", None)]) == []
    )
    assert dict(PartitionTransaction(driver.store()).items(SHARES)) == {}


def test_a_message_it_cannot_apply_is_dead_lettered(driver: ProcessorDriver) -> None:
    message = driver.message(0, Input(BIN_KEY.encode(BIN), b"not a snapshot"))
    with pytest.raises(ValueError, match="expected"):
        driver.process([message])  # the runtime then dead-letters it alone
    (letter,) = driver.dead_letter(message, "bad snapshot")
    assert (letter.topic, letter.key, letter.value) == (
        "dlq",
        BIN_KEY.encode(BIN),
        b"not a snapshot",
    )
    assert dict(letter.headers or [])[REASON] == b"bad snapshot"
    assert dict(PartitionTransaction(driver.store()).items(SHARES)) == {}
    assert dirty(driver) == []


def _labelled(partition: int, version: int, counters: Counters, arrival_ms: int) -> Input:
    sent = snapshot(partition, version, counters)
    return Input(sent.key, sent.value, headers=[label_header(arrival_ms)])


def _latencies() -> tuple[float, float]:
    """The label-to-emission histogram's (count, sum) so far."""
    name = "driftline_label_to_emission_seconds"
    count = REGISTRY.get_sample_value(f"{name}_count") or 0.0
    return count, REGISTRY.get_sample_value(f"{name}_sum") or 0.0


def _observed_since(before: tuple[float, float]) -> tuple[float, float]:
    count, total = _latencies()
    return count - before[0], round(total - before[1], 6)


def test_an_emission_observes_its_bins_earliest_label_once(driver: ProcessorDriver) -> None:
    before = _latencies()
    both = [_labelled(0, 10, {"n": 1}, START_MS - 3_000), _labelled(1, 5, {"n": 1}, START_MS - 1)]
    assert list(emitted(driver.send(both))) == [BIN]
    assert _observed_since(before) == (1, 3.0)  # one emission, from the earliest label
    # Delivered again: no change, no new label, nothing observed even once emitted.
    before = _latencies()
    driver.now_ms += INTERVAL_MS
    assert driver.send([_labelled(0, 10, {"n": 1}, START_MS - 9_000)]) == []
    assert list(emitted(driver.send([snapshot(1, 6, {"n": 2})]))) == [BIN]
    assert _observed_since(before) == (0, 0.0)
    # A label of a bin emitted later (dirty, then the tick): observed at its emission.
    arrival = driver.now_ms + 100
    driver.now_ms += 200
    assert driver.send([_labelled(0, 11, {"n": 2}, arrival)]) == []
    driver.now_ms += INTERVAL_MS
    assert list(emitted(driver.tick())) == [BIN]
    assert _observed_since(before) == (1, (driver.now_ms - arrival) / 1000)


def test_a_revoked_partitions_labels_are_forgotten(driver: ProcessorDriver) -> None:
    processor = driver.processor
    assert isinstance(processor, BinTotalsProcessor)
    emitted(driver.send([snapshot(0, 10, {"n": 1})]))
    driver.now_ms += 100
    assert driver.send([_labelled(0, 11, {"n": 2}, driver.now_ms)]) == []  # dirty
    processor.assigned(set())  # revoked: another worker emits the bin
    before = _latencies()
    driver.now_ms += INTERVAL_MS
    assert list(emitted(driver.tick())) == [BIN]
    assert _observed_since(before) == (0, 0.0)


def test_a_generation_is_swapped_in_whole_once_every_partition_sent_its_shares(
    driver: ProcessorDriver,
) -> None:
    """A rebuild into a generation: the bins in use stay as they are (deltas still count)
    until the last partition's word; then every share of the model is the generation's
    (with the deltas that came after each partition's rebuild), at once, and a share the
    generation has none of is emptied."""
    other = (MODEL, HOUR + 1)
    driver.send(
        [snapshot(0, 10, {"n": 5}), snapshot(1, 4, {"n": 3}), snapshot(1, 4, {"n": 1}, other)]
    )
    driver.now_ms += INTERVAL_MS
    assert driver.send([staged(0, 7, 20, {"n": 6}), done(0, 7, 20, partitions=2)]) == []
    driver.now_ms += INTERVAL_MS
    old = emitted(driver.send([delta(0, 25, {"n": 1})]))[BIN]  # after partition 0's rebuild
    assert old is not None
    assert old["counts"] == {"n": 9}  # the bins in use: 5 + 1 + 3
    driver.now_ms += INTERVAL_MS
    swapped = emitted(driver.send([staged(1, 7, 30, {"n": 4}), done(1, 7, 30, partitions=2)]))
    driver.now_ms += INTERVAL_MS
    swapped.update(emitted(driver.tick()))
    new = swapped[BIN]
    assert new is not None
    assert new["counts"] == {"n": 11}  # the generation: 6 + 1 (the later delta) + 4
    assert swapped[other] is None  # partition 1 has no event left there
    tables = PartitionTransaction(driver.store())
    assert [list(tables.items(table)) for table in (STAGED, GENERATION_DONE, GENERATIONS)] == [
        [],
        [],
        [],
    ]


def test_a_newer_generation_replaces_one_being_built(driver: ProcessorDriver) -> None:
    driver.send([snapshot(0, 10, {"n": 5})])
    driver.now_ms += INTERVAL_MS
    driver.send([staged(0, 7, 20, {"n": 100}), done(0, 7, 20, partitions=2)])
    swapped = emitted(driver.send([staged(0, 9, 30, {"n": 6}), done(0, 9, 30, partitions=1)]))
    driver.now_ms += INTERVAL_MS
    swapped.update(emitted(driver.tick()))
    found = swapped[BIN]
    assert found is not None
    assert found["counts"] == {"n": 6}
    driver.now_ms += INTERVAL_MS
    # The older generation's last word comes late: it swaps nothing in.
    assert driver.send([staged(1, 7, 21, {"n": 100}), done(1, 7, 21, partitions=2)]) == []
    driver.now_ms += INTERVAL_MS
    assert driver.tick() == []
