"""Stage 2 of the metric bins: sum the partitions' shares, compute metrics, re-emit.

Input: bin-partials snapshots keyed by bin (``agents/bin_shares.py``). For each bin the
processor keeps the newest snapshot of every ingest partition (an older or repeated one
changes nothing) and emits the bin whole - counts, metrics and a version - to the
compacted metrics topic (and, keyed by its model, to the alert evaluator's input), at
most once per ``DRIFTLINE_EMIT_INTERVAL_S`` per bin, so a burst of changes gives few
emissions: a bin changed within its interval is marked dirty and emitted by a later tick.
A bin whose shares are all empty is emitted as a tombstone. The rules live in
``state.bin_totals``: this module decodes the snapshots, applies the rules through the
batch's transaction and encodes the bins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from confluent_kafka import Message

from driftline.agents.runtime import Outgoing, dead_letter_to
from driftline.state.bin_totals import (
    BinTotal,
    EmissionTimes,
    Share,
    ShareKey,
    bin_of,
    bin_total,
    changed_shares,
    newest_shares,
)
from driftline.state.bins import BIN_KEY, BinKey
from driftline.state.metrics import bin_metrics
from driftline.state.partition_tables import DIRTY, MARKED, SHARES, shares_of
from driftline.state.registered import RegisteredModel
from driftline.state.tables import TEXT, PartitionTransaction
from driftline.topics.bin_partials import BIN_PARTIAL
from driftline.topics.dead_letters import DeadLetter
from driftline.topics.metric_bins import METRICS_VALUE, MetricsValue, metrics_value
from driftline.topics.model_bins import MODEL_BIN, ModelBin
from driftline.topics.service_metrics import BIN_EMISSIONS

EMITTED_BINS = BIN_EMISSIONS.labels("bin")
EMITTED_TOMBSTONES = BIN_EMISSIONS.labels("tombstone")


class BinTotalsProcessor:
    """The bins runner's processor; one per worker, for all the partitions it holds (the
    emission times are per bin, and a bin lives in one partition)."""

    def __init__(
        self,
        registered_model: Callable[[str], RegisteredModel | None],
        metrics_topic: str,
        model_bins_topic: str,
        emit_interval_s: float,
        dead_letter_topic: str,
    ) -> None:
        self._registered_model = registered_model
        self._metrics_topic = metrics_topic
        self._model_bins_topic = model_bins_topic
        self._dead_letter_topic = dead_letter_topic
        self._emissions: EmissionTimes[BinKey] = EmissionTimes(int(emit_interval_s * 1000))

    def handle(
        self, partition: int, messages: Sequence[Message], tx: PartitionTransaction, now_ms: int
    ) -> list[Outgoing]:
        """Keep the newest shares; emit the changed bins whose interval is over, mark the
        rest dirty. Leaving every changed bin to the next tick made a label wait up to a
        tick interval (0.1 s) more on its way to Redis, even in a bin that had not changed
        for seconds."""
        newest = newest_shares(_decoded(messages))
        stored = tx.get_many(SHARES, list(newest))
        changed: dict[BinKey, None] = {}
        for key, share in changed_shares(newest, stored).items():
            tx.set(SHARES, key, share)
            changed[bin_of(key)] = None
        outgoing: list[Outgoing] = []
        for bin_key in changed:
            if self._emissions.take(bin_key, now_ms):
                outgoing += self._emitted(bin_key, tx, now_ms)
            else:
                tx.set(DIRTY, bin_key, MARKED)
        return outgoing

    def tick(self, partition: int, tx: PartitionTransaction, now_ms: int) -> list[Outgoing]:
        """Emit the dirty bins whose interval is over."""
        self._emissions.forget_old(now_ms)
        outgoing: list[Outgoing] = []
        for bin_key, _ in list(tx.items(DIRTY)):
            if self._emissions.take(bin_key, now_ms):
                outgoing += self._emitted(bin_key, tx, now_ms)
        return outgoing

    def dead_letter(
        self, partition: int, message: Message, reason: str, tx: PartitionTransaction
    ) -> list[Outgoing]:
        return [dead_letter_to(self._dead_letter_topic, DeadLetter.of(message, reason))]

    def _emitted(self, bin_key: BinKey, tx: PartitionTransaction, now_ms: int) -> list[Outgoing]:
        """The bin as it stands, summed from its shares (the batch's own included), to the
        metrics topic and, keyed by its model, to the alert evaluator; no longer dirty."""
        tx.delete(DIRTY, bin_key)
        total = bin_total(share for _, share in tx.items(SHARES, shares_of(bin_key)))
        model, hour = bin_key
        value = None if total is None else self._bin_value(bin_key, total, now_ms)
        # Counted as emitted, not as committed: a batch consumed again after an outage
        # counts its emissions again (a counter only ever overstates, never misses).
        (EMITTED_TOMBSTONES if value is None else EMITTED_BINS).inc()
        return [
            Outgoing(
                self._metrics_topic,
                BIN_KEY.encode(bin_key),
                None if value is None else METRICS_VALUE.encode(value),
            ),
            Outgoing(
                self._model_bins_topic, TEXT.encode(model), MODEL_BIN.encode(ModelBin(hour, value))
            ),
        ]

    def _bin_value(self, bin_key: BinKey, total: BinTotal, now_ms: int) -> MetricsValue:
        registered = self._registered_model(bin_key[0])
        metrics = (
            None
            if registered is None
            else bin_metrics(registered.spec, registered.baseline, total.counters)
        )
        return metrics_value(bin_key, total.version, now_ms, total.counters, metrics)


def _decoded(messages: Sequence[Message]) -> Iterator[tuple[ShareKey, Share]]:
    """Each snapshot as (model, hour, ingest partition) and its share, one at a time; a
    message without key or value (none is written) is skipped."""
    for message in messages:
        raw_key, value = message.key(), message.value()
        if raw_key is None or value is None:
            continue
        model, hour = BIN_KEY.decode(raw_key)
        partial = BIN_PARTIAL.decode(value)
        yield (model, hour, partial.partition), partial.share
