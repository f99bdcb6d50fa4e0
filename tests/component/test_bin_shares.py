"""Stage 1 of the bins (``BinShares``) on a real partition store: each ingest partition's
share of every hour bin, kept in its store and sent whole as a versioned snapshot."""

from __future__ import annotations

from collections.abc import Callable

from driftline.state.bin_totals import Share
from driftline.state.bins import BIN_KEY, ContributionRules, bins_of
from driftline.state.events import EventChange
from driftline.state.registered import RegisteredModel
from driftline.topics.bin_partials import BIN_PARTIAL, BinPartial
from tests.support.bins_stage import HOUR, MODEL, IngestPartition, event, inserted


def test_a_partition_share_equals_a_recomputation_and_is_sent_whole(
    ingest_partition: Callable[[int], IngestPartition], registered: RegisteredModel
) -> None:
    partition = ingest_partition(2)
    rules = {MODEL: ContributionRules(registered.spec, registered.baseline)}
    first = [event(i) for i in range(5)] + [event(9, hour=HOUR + 1)]
    partition.batch(inserted(*first))
    labelled = event(3, label=1)
    snapshots = partition.batch(
        [EventChange(MODEL, first[3], labelled), EventChange(MODEL, first[4], None)]
    )
    final = [(MODEL, e) for e in [*first[:3], labelled, first[5]]]
    assert partition.stored_shares() == bins_of(rules, final)
    # Only the changed bin is sent: its whole share, versioned by the batch's next offset.
    (snapshot,) = snapshots
    assert snapshot.topic == "bin-partials"
    assert snapshot.key == BIN_KEY.encode((MODEL, HOUR))
    assert snapshot.value is not None
    share = partition.stored_shares()[(MODEL, HOUR)]
    assert BIN_PARTIAL.decode(snapshot.value) == BinPartial(2, Share(20, share))


def test_a_share_that_empties_is_deleted_and_sent_empty(
    ingest_partition: Callable[[int], IngestPartition],
) -> None:
    partition = ingest_partition(0)
    partition.batch(inserted(event(1)))
    (snapshot,) = partition.batch([EventChange(MODEL, event(1), None)])
    assert partition.stored_shares() == {}
    assert snapshot.value is not None
    assert BIN_PARTIAL.decode(snapshot.value) == BinPartial(0, Share(20, {}))


def test_events_of_an_unknown_model_and_empty_batches_send_nothing(
    ingest_partition: Callable[[int], IngestPartition],
) -> None:
    partition = ingest_partition(0)
    assert partition.batch([EventChange("shop/other", None, event(1))]) == []
    assert partition.batch([]) == []
    assert partition.stored_shares() == {}
