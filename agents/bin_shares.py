"""Stage 1 of the metric bins: what each batch of an ingest partition does to every hour
bin.

Each batch's event changes are summed per bin (``state.bins.batch_deltas``) and sent as
deltas, versioned by the batch's next input offset, to the bin-partials topic, in the
batch's transaction: the bins stage (``agents/bin_totals.py``) counts each delta once
(by its version) and folds them into the partition's share of the bin. A batch costs what
it changes: the stage keeps no share of its own, only which bins it ever sent a delta of,
so that a rebuild (``rebuild_bins``), which recomputes the partition's shares of a model
from its stored events and sends them whole (into a new generation, or as snapshots in
place), can also empty the bins it no longer has an event of. Sending whole shares
after every batch made a backfill over a year of hours, whose batches touch a bin per
event, rewrite a kilobyte-sized share per event in both stages and both changelogs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from driftline.agents.runtime import Outgoing
from driftline.state.bin_totals import DELTA_FORMAT, DONE_FORMAT, STAGED_FORMAT, Share
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
from driftline.state.tables import TEXT, PartitionTransaction
from driftline.topics.bin_partials import BIN_PARTIAL, BinPartial, label_header


class BinShares:
    """Called by the merge processor with each batch's event changes."""

    def __init__(
        self,
        registered_model: Callable[[str], RegisteredModel | None],
        topic: str,
        ingest_partitions: int = 1,
        bins_partitions: int = 1,
    ) -> None:
        self._registered_model = registered_model
        self._topic = topic
        self._ingest_partitions = ingest_partitions
        self._bins_partitions = bins_partitions
        self._rules: dict[str, tuple[RegisteredModel, ContributionRules]] = {}

    def apply(
        self,
        partition: int,
        version: int,
        changes: list[EventChange],
        tx: PartitionTransaction,
        label_arrivals: Mapping[BinKey, int],
        rebuilt: Mapping[str, int] | None = None,
    ) -> list[Outgoing]:
        """The changes' delta to each bin they change, with the earliest arrival of the
        labels it took when it took any (a header: the delta itself is the same with or
        without it). The shares of the ``rebuilt`` models (model -> rebuild generation)
        are recomputed from the stored events (the batch's own changes included) and sent
        whole: in place of the deltas for generation 0; else into the generation, beside
        the deltas (the bins in use until the generation is complete take those), followed
        by the partition's word to every bins partition that it sent them all."""
        deltas = self.deltas(changes)
        in_place: dict[BinKey, Counters] = {}
        generations: list[Outgoing] = []
        for model, generation in (rebuilt or {}).items():
            shares = self._recomputed(model, tx)
            if generation:
                generations += self._generation(model, generation, partition, version, shares)
            else:
                in_place.update(shares)
        _hold(tx, [key for key in deltas if key not in in_place])
        outgoing: list[Outgoing] = []
        for key, counters in deltas.items():
            if key not in in_place:
                record = BinPartial(partition, Share(version, counters), DELTA_FORMAT)
                outgoing.append(self._sent(key, record, label_arrivals.get(key)))
        for key, counters in in_place.items():
            record = BinPartial(partition, Share(version, counters))
            outgoing.append(self._sent(key, record, label_arrivals.get(key)))
        return outgoing + generations

    def _generation(
        self,
        model: str,
        generation: int,
        partition: int,
        version: int,
        shares: Mapping[BinKey, Counters],
    ) -> list[Outgoing]:
        """The partition's shares in the rebuild's generation, then its word that they
        are all sent, to every bins partition (each swaps its bins of the model in once it
        has the word of every ingest partition)."""
        sent = [
            self._sent(key, BinPartial(partition, Share(version, c), STAGED_FORMAT, generation))
            for key, c in shares.items()
        ]
        done = BinPartial(
            partition, Share(version), DONE_FORMAT, generation, self._ingest_partitions
        )
        value = BIN_PARTIAL.encode(done)
        sent += [
            Outgoing(self._topic, TEXT.encode(model), value, partition=bins_partition)
            for bins_partition in range(self._bins_partitions)
        ]
        return sent

    def _sent(self, key: BinKey, record: BinPartial, arrival_ms: int | None = None) -> Outgoing:
        headers = None if arrival_ms is None else [label_header(arrival_ms)]
        return Outgoing(self._topic, BIN_KEY.encode(key), BIN_PARTIAL.encode(record), headers)

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
