"""Stage 1 of the metric bins: each ingest partition's share of every hour bin.

The shares live in the same partition store as the events that feed them and are written
in the same atomic batch, so a bin share always equals the contributions of the
partition's current events, whatever crashes and redeliveries happened. Each changed
share is then sent whole, as a snapshot versioned by the batch's input offset, to the
bin-partials topic; the bins stage (``agents/bin_totals.py``) keeps the newest snapshot
per partition and sums them. A snapshot, unlike a delta, can be applied twice.
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
    add_into,
    batch_deltas,
    bins_of,
)
from driftline.state.events import EventChange
from driftline.state.partition_tables import EVENTS, PARTIALS
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
        """Add the changes' deltas to the partition's shares; a snapshot of each changed one,
        with the earliest arrival of the labels it took when it took any (a header: the
        share itself, and so which snapshot is newest, is the same with or without it).
        The shares of the ``rebuilt`` models are recomputed from the stored events instead,
        and all of them are sent."""
        shares = self._added(version, self.deltas(changes), tx)
        for model in rebuilt:
            shares.update(self._recomputed(version, model, tx))
        outgoing: list[Outgoing] = []
        for key, share in shares.items():
            snapshot = BIN_PARTIAL.encode(BinPartial(partition, share))
            arrival = label_arrivals.get(key)
            headers = None if arrival is None else [label_header(arrival)]
            outgoing.append(Outgoing(self._topic, BIN_KEY.encode(key), snapshot, headers))
        return outgoing

    @staticmethod
    def _added(
        version: int, deltas: dict[BinKey, Counters], tx: PartitionTransaction
    ) -> dict[BinKey, Share]:
        """The shares the deltas change, as they stand after them (stored)."""
        changed = list(deltas)
        stored = tx.get_many(PARTIALS, changed)
        shares: dict[BinKey, Share] = {}
        for key, current in zip(changed, stored, strict=True):
            counters = dict(current.counters) if current is not None else {}
            add_into(counters, deltas[key])
            shares[key] = _stored(tx, key, Share(version, counters))
        return shares

    def _recomputed(
        self, version: int, model: str, tx: PartitionTransaction
    ) -> dict[BinKey, Share]:
        """Every share of the model, recomputed from the events the partition stores (the
        batch's own changes included), stored in place of the old ones; the bins it no
        longer has an event of get an empty share. A model not registered (any more) keeps
        its shares."""
        rules = self.rules(model)
        if rules is None:
            return {}
        prefix = f"{model}/".encode()
        events = ((model, event) for _, event in tx.items(EVENTS, prefix=prefix))
        counters: dict[BinKey, Counters] = {key: {} for key, _ in tx.items(PARTIALS, prefix=prefix)}
        counters.update(bins_of({model: rules}, events))
        return {key: _stored(tx, key, Share(version, share)) for key, share in counters.items()}

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


def _stored(tx: PartitionTransaction, key: BinKey, share: Share) -> Share:
    """Store the share (an empty one is no share: its row goes); its encoded counters
    are computed once, for the store and for the snapshot."""
    if share.counters:
        tx.set(PARTIALS, key, share)
    else:
        tx.delete(PARTIALS, key)
    return share
