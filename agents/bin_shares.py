"""Stage 1 of the metric bins: what each batch of an ingest partition does to every hour
bin.

Each batch's event changes are summed per bin (``state.bins.batch_deltas``) and sent as
deltas, versioned by the batch's next input offset, to the bin-partials topic, in the
batch's transaction: the bins stage (``agents/bin_totals.py``) counts each delta once
(by its version) and folds them into the partition's share of the bin. A batch costs what
it changes: the stage keeps no share of its own, only which bins it ever sent a delta of,
so that a rebuild (``rebuild_bins``), which recomputes the partition's shares of a model
from its stored events and sends them whole as snapshots, can also empty the bins it no
longer has an event of. Sending whole shares after every batch made a backfill over a
year of hours, whose batches touch a bin per event, rewrite a kilobyte-sized share per
event in both stages and both changelogs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from driftline.agents.runtime import Outgoing
from driftline.state.bin_totals import Share
from driftline.state.bins import (
    BIN_KEY,
    BinKey,
    ContributionRules,
    Counters,
    batch_deltas,
    bins_of,
)
from driftline.state.events import EventChange
from driftline.state.partition_tables import EVENTS, HELD_BINS, MARKED
from driftline.state.registered import RegisteredModel
from driftline.state.tables import PartitionTransaction
from driftline.topics.bin_partials import BIN_PARTIAL, BinPartial, label_header


class BinShares:
    """Called by the merge processor with each batch's event changes."""

    def __init__(
        self, registered_model: Callable[[str], RegisteredModel | None], topic: str
    ) -> None:
        self._registered_model = registered_model
        self._topic = topic
        self._rules: dict[str, tuple[RegisteredModel, ContributionRules]] = {}

    def apply(
        self,
        partition: int,
        version: int,
        changes: list[EventChange],
        tx: PartitionTransaction,
        label_arrivals: Mapping[BinKey, int],
        rebuilt: Collection[str] = (),
    ) -> list[Outgoing]:
        """The changes' delta to each bin they change, with the earliest arrival of the
        labels it took when it took any (a header: the delta itself is the same with or
        without it). The shares of the ``rebuilt`` models are recomputed from the stored
        events instead (the batch's own changes included), and all of them are sent
        whole."""
        deltas = self.deltas(changes)
        snapshots: dict[BinKey, Counters] = {}
        for model in rebuilt:
            snapshots.update(self._recomputed(model, tx))
        _hold(tx, [key for key in deltas if key not in snapshots])
        outgoing: list[Outgoing] = []
        for key, counters in deltas.items():
            if key not in snapshots:
                outgoing.append(self._sent(key, partition, version, counters, label_arrivals, True))
        for key, counters in snapshots.items():
            outgoing.append(self._sent(key, partition, version, counters, label_arrivals, False))
        return outgoing

    def _sent(
        self,
        key: BinKey,
        partition: int,
        version: int,
        counters: Counters,
        label_arrivals: Mapping[BinKey, int],
        delta: bool,
    ) -> Outgoing:
        record = BIN_PARTIAL.encode(BinPartial(partition, Share(version, counters), delta))
        arrival = label_arrivals.get(key)
        headers = None if arrival is None else [label_header(arrival)]
        return Outgoing(self._topic, BIN_KEY.encode(key), record, headers)

    def _recomputed(self, model: str, tx: PartitionTransaction) -> dict[BinKey, Counters]:
        """Every share of the model, recomputed from the events the partition stores (the
        batch's own changes included); the bins it sent a delta of and no longer has an
        event of get an empty share. A model not registered (any more) keeps its shares."""
        rules = self.rules(model)
        if rules is None:
            return {}
        prefix = f"{model}/".encode()
        events = ((model, event) for _, event in tx.items(EVENTS, prefix=prefix))
        shares: dict[BinKey, Counters] = {key: {} for key, _ in tx.items(HELD_BINS, prefix=prefix)}
        shares.update(bins_of({model: rules}, events))
        _hold(tx, list(shares))
        return shares

    def deltas(self, changes: list[EventChange]) -> dict[BinKey, Counters]:
        """The batch's non-empty bin deltas, each model's changes counted together."""
        by_model: dict[str, list[EventChange]] = {}
        for change in changes:
            by_model.setdefault(change.model_key, []).append(change)
        deltas: dict[BinKey, Counters] = {}
        for model, model_changes in by_model.items():
            rules = self.rules(model)
            if rules is not None:
                deltas.update(batch_deltas(rules, model, model_changes))
        return deltas

    def rules(self, model: str) -> ContributionRules | None:
        """The model's contribution rules, rebuilt when its registration changes."""
        registered = self._registered_model(model)
        if registered is None:
            return None
        cached = self._rules.get(model)
        if cached is None or cached[0] is not registered:
            cached = (registered, ContributionRules(registered.spec, registered.baseline))
            self._rules[model] = cached
        return cached[1]


def _hold(tx: PartitionTransaction, keys: list[BinKey]) -> None:
    """Remember the bins sent, those not known yet: one multi-get of small records."""
    held = tx.get_many(HELD_BINS, keys)
    for key, known in zip(keys, held, strict=True):
        if known is None:
            tx.set(HELD_BINS, key, MARKED)
