"""Stage 1 of the bins (``BinShares``) on a real partition store: each batch sends the
change it made to every bin it touched, as a delta versioned by the batch's next offset;
the deltas sum to the partition's share."""

from __future__ import annotations

from collections.abc import Callable

from driftline.state.bins import BIN_KEY, BinKey, ContributionRules, Counters, bins_of
from driftline.state.events import EventChange
from driftline.state.partition_tables import HELD_BINS
from driftline.state.registered import RegisteredModel
from driftline.state.tables import PartitionTransaction
from driftline.topics.bin_partials import BIN_PARTIAL
from tests.support.bins_stage import HOUR, MODEL, IngestPartition, event, inserted


def difference(
    after: dict[BinKey, Counters], before: dict[BinKey, Counters]
) -> dict[BinKey, Counters]:
    """Per bin, ``after - before``, counter by counter, zeros left out."""
    changed: dict[BinKey, Counters] = {}
    for key in after.keys() | before.keys():
        names = after.get(key, {}).keys() | before.get(key, {}).keys()
        delta = {n: after.get(key, {}).get(n, 0) - before.get(key, {}).get(n, 0) for n in names}
        if any(delta.values()):
            changed[key] = {name: count for name, count in delta.items() if count}
    return changed


def test_a_batch_sends_its_change_to_each_bin_and_the_deltas_sum_to_a_recomputation(
    ingest_partition: Callable[[int], IngestPartition], registered: RegisteredModel
) -> None:
    partition = ingest_partition(2)
    rules = {MODEL: ContributionRules(registered.spec, registered.baseline)}
    first = [event(i) for i in range(5)] + [event(9, hour=HOUR + 1)]
    partition.batch(inserted(*first))
    labelled = event(3, label=1)
    records = partition.batch(
        [EventChange(MODEL, first[3], labelled), EventChange(MODEL, first[4], None)]
    )
    final = [(MODEL, e) for e in [*first[:3], labelled, first[5]]]
    assert partition.sent_shares() == bins_of(rules, final)
    # Only the changed bin is sent: the batch's change, versioned by its next offset.
    (record,) = records
    assert record.topic == "bin-partials"
    assert record.key == BIN_KEY.encode((MODEL, HOUR))
    assert record.value is not None
    delta = BIN_PARTIAL.decode(record.value)
    assert (delta.partition, delta.share.version, delta.delta) == (2, 20, True)
    expected = difference(bins_of(rules, final), bins_of(rules, [(MODEL, e) for e in first]))
    assert {(MODEL, HOUR): delta.share.counters} == expected


def test_a_bin_that_empties_gets_the_delta_that_takes_everything_out(
    ingest_partition: Callable[[int], IngestPartition], registered: RegisteredModel
) -> None:
    partition = ingest_partition(0)
    rules = {MODEL: ContributionRules(registered.spec, registered.baseline)}
    partition.batch(inserted(event(1)))
    (record,) = partition.batch([EventChange(MODEL, event(1), None)])
    assert partition.sent_shares() == {}
    assert record.value is not None
    delta = BIN_PARTIAL.decode(record.value)
    assert delta.delta
    assert {(MODEL, HOUR): delta.share.counters} == difference(
        {}, bins_of(rules, [(MODEL, event(1))])
    )


def test_events_of_an_unknown_model_and_empty_batches_send_nothing(
    ingest_partition: Callable[[int], IngestPartition],
) -> None:
    partition = ingest_partition(0)
    assert partition.batch([EventChange("shop/other", None, event(1))]) == []
    assert partition.batch([]) == []
    assert dict(PartitionTransaction(partition.store).items(HELD_BINS)) == {}
