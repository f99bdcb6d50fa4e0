"""Stage 2 of the metric bins: fold the partitions' deltas, sum the shares, compute
metrics, re-emit.

Input: bin-partials records keyed by bin (``agents/bin_shares.py``): deltas, and the
snapshots a rebuild sends. For each bin and ingest partition the processor keeps a share
and the deltas not folded into it yet, each under its version (a delta delivered again
overwrites itself); a snapshot newer than the share replaces it and the deltas it holds.
A batch stores what it received and marks the bins; the emission folds a bin's deltas
into its shares and emits the bin whole - counts, metrics and a version - to the
compacted metrics topic (and, keyed by its model, to the alert evaluator's input), at
most once per ``DRIFTLINE_EMIT_INTERVAL_S`` per bin, so a burst of changes gives few
emissions: a bin changed within its interval is marked dirty and emitted by a later tick.
While the merge stage is behind its input, emitting - and the work it sets off in the
projections and the alert evaluator - gets a share of the worker's time
(``EmissionBudget``): a backfill over a year of hours changes thousands of bins per batch,
and the bins the budget has no time for wait dirty, emitted in turn, all of them once the
backlog is gone. Live traffic is not held back: the budget is all of the time then.
A rebuild into a generation (``driftline replay bins``) is kept aside - each ingest
partition's shares, then its word that they are all sent - while the bins in use go on;
the deltas that come after a partition's rebuild are folded into its shares of both. With
every partition's word, the model's shares are swapped for the generation's in one batch
and its bins emitted, so no bin ever sums an old share with a new one.
A bin whose shares are all empty is emitted as a tombstone. The rules live in
``state.bin_totals``: this module decodes the records, applies the rules through the
batch's transaction and encodes the bins.

The label-to-emission latency: a record whose batch applied labels carries the earliest
of their arrivals (``topics.bin_partials.LABEL_ARRIVAL``); it is kept, per bin, in memory
until the bin's emission observes it. A crash or a revoked partition loses what was kept
(a sample missing, never a wrong one).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from confluent_kafka import Message

from driftline.agents.runtime import Outgoing, dead_letter_to
from driftline.state.bin_totals import (
    DONE_FORMAT,
    STAGED_FORMAT,
    BinTotal,
    DeltaKey,
    EmissionBudget,
    EmissionTimes,
    Share,
    ShareKey,
    bin_of,
    bin_total,
    changed_shares,
    folded,
    newest_shares,
    supersedes,
)
from driftline.state.bins import BIN_KEY, BinKey
from driftline.state.metrics import bin_metrics
from driftline.state.partition_tables import (
    DELTAS,
    DIRTY,
    GENERATION_DONE,
    GENERATIONS,
    MARKED,
    SHARES,
    STAGED,
    DoneKey,
    StagedKey,
    generation_prefix,
    shares_of,
)
from driftline.state.registered import RegisteredModel
from driftline.state.tables import TEXT, PartitionTransaction
from driftline.topics.bin_partials import BIN_PARTIAL, label_arrival
from driftline.topics.dead_letters import DeadLetter
from driftline.topics.metric_bins import METRICS_VALUE, MetricsValue, metrics_value
from driftline.topics.model_bins import MODEL_BIN, ModelBin
from driftline.topics.service_metrics import BIN_EMISSIONS, LABEL_TO_EMISSION

EMITTED_BINS = BIN_EMISSIONS.labels("bin")
EMITTED_TOMBSTONES = BIN_EMISSIONS.labels("tombstone")

# While the merge stage is behind its input, emitting - with what it sets off downstream -
# may take this share of the time (``EmissionBudget``): a backfill over a year of hours
# then spends most of it merging, and a bin changed by every batch is emitted every few
# seconds instead of after each batch.
EMISSION_SHARE = 0.1
# At most this much emitting at once (ms): a tick after a long quiet spell does not stall
# the next batch for long.
EMISSION_BURST_MS = 200.0


def _never() -> bool:
    return False


def _none_ms() -> float:
    return 0.0


def _clock_ms() -> float:
    return time.perf_counter() * 1000


def _cpu_ms() -> float:
    """The thread's CPU time: an emission's cost without the time it waited for the
    interpreter, which the other stages of the worker hold meanwhile."""
    return time.thread_time() * 1000


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
        behind: Callable[[], bool] = _never,
        downstream_ms: Callable[[], float] = _none_ms,
    ) -> None:
        """``behind``: whether the merge stage has a backlog (the budget then holds
        emitting to its share); ``downstream_ms``: the CPU time (ms) the threads working on
        what it emits used since the last call, charged to the budget meanwhile."""
        self._registered_model = registered_model
        self._metrics_topic = metrics_topic
        self._model_bins_topic = model_bins_topic
        self._dead_letter_topic = dead_letter_topic
        self._emissions: EmissionTimes[BinKey] = EmissionTimes(int(emit_interval_s * 1000))
        self._budget = EmissionBudget(EMISSION_SHARE, EMISSION_BURST_MS)
        self._behind = behind
        self._downstream_ms = downstream_ms
        # Per partition held: the dirty bin key (encoded) the next tick starts from, so
        # that, when the budget runs out, the next tick goes on where this one stopped.
        self._dirty_cursor: dict[int, bytes] = {}
        # Per partition held, per bin: the earliest label arrival (ms) not yet emitted.
        self._label_arrivals: dict[int, dict[BinKey, int]] = {}

    def assigned(self, partitions: set[int]) -> None:
        """The runner's assignment changed: a revoked partition's bins are emitted by
        another worker, so what was kept for them would be stale if it came back."""
        for partition in set(self._label_arrivals) - partitions:
            del self._label_arrivals[partition]
        for partition in set(self._dirty_cursor) - partitions:
            del self._dirty_cursor[partition]

    def handle(
        self, partition: int, messages: Sequence[Message], tx: PartitionTransaction, now_ms: int
    ) -> list[Outgoing]:
        """Store the deltas and the newest snapshots; emit the changed bins whose interval
        is over, mark the rest dirty. Leaving every changed bin to the next tick made a
        label wait up to a tick interval (0.1 s) more on its way to Redis, even in a bin
        that had not changed for seconds. A bin the emission budget has no time for is
        marked dirty too."""
        self._refill()
        received = _Received()
        for message in messages:
            received.add(message)
        changed: dict[BinKey, None] = {}
        for (model, hour, source, version), delta in received.deltas.items():
            tx.set(DELTAS, (model, hour, source, version), delta)
            changed[(model, hour)] = None
        newest = newest_shares(received.snapshots)
        found = tx.get_many(SHARES, list(newest))
        stored = dict(zip(newest, found, strict=True))
        for key, share in changed_shares(newest, found).items():
            _replace(tx, key, share)
            changed[bin_of(key)] = None
        for staged in received.staged:
            _stage(tx, staged)
        for done in received.done:
            changed.update(dict.fromkeys(_count_done(tx, done)))
        self._keep_labels(partition, received.labels(stored))
        outgoing: list[Outgoing] = []
        waiting: list[BinKey] = []
        for bin_key in changed:
            if self._budget.allows() and self._emissions.take(bin_key, now_ms):
                outgoing += self._emitted(partition, bin_key, tx, now_ms)
            else:
                waiting.append(bin_key)
        _mark_dirty(tx, waiting)
        return outgoing

    def tick(self, partition: int, tx: PartitionTransaction, now_ms: int) -> list[Outgoing]:
        """Emit the dirty bins whose interval is over, as far as the budget goes: in turn,
        from where the partition's last tick stopped. A tick also ends after a burst's
        time on the clock: the budget counts CPU time, and while the other stages hold
        the interpreter a tick's emissions took seconds, the bins' input waiting."""
        self._emissions.forget_old(now_ms)
        clock_ms = self._refill()
        outgoing: list[Outgoing] = []
        for bin_key in self._dirty_in_turn(partition, tx):
            if not self._budget.allows() or _clock_ms() - clock_ms > EMISSION_BURST_MS:
                break
            if self._emissions.take(bin_key, now_ms):
                outgoing += self._emitted(partition, bin_key, tx, now_ms)
            self._dirty_cursor[partition] = BIN_KEY.encode(bin_key) + b"\x00"
        return outgoing

    def _refill(self) -> float:
        """The budget's credit for the time since the last refill, less, under a backlog,
        what the threads downstream spent meanwhile; the clock (ms) it was refilled at."""
        clock_ms = _clock_ms()
        busy = self._behind()
        self._budget.refill(clock_ms, busy)
        # Read even without a backlog: the reading is where the next one counts from.
        downstream_ms = self._downstream_ms()
        if busy:
            self._budget.spend(downstream_ms)
        return clock_ms

    def _dirty_in_turn(self, partition: int, tx: PartitionTransaction) -> Iterator[BinKey]:
        """The partition's dirty bins from its cursor on, then those before it. Read as
        consumed: over a year of hours, listing every dirty bin on each tick cost more
        than the emissions the budget allowed."""
        cursor = self._dirty_cursor.get(partition, b"")
        for bin_key, _ in tx.items(DIRTY, start=cursor):
            yield bin_key
        if cursor:
            for bin_key, _ in tx.items(DIRTY):
                if BIN_KEY.encode(bin_key) >= cursor:
                    return
                yield bin_key

    def _keep_labels(self, partition: int, labels: dict[BinKey, int]) -> None:
        """Keep each bin's earliest label arrival until its emission."""
        kept = self._label_arrivals.setdefault(partition, {})
        for bin_key, arrival_ms in labels.items():
            kept[bin_key] = min(arrival_ms, kept.get(bin_key, arrival_ms))

    def _observe_label(self, partition: int, bin_key: BinKey, now_ms: int) -> None:
        """The latency from the bin's earliest label kept to this emission of it."""
        arrival_ms = self._label_arrivals.get(partition, {}).pop(bin_key, None)
        if arrival_ms is not None:
            LABEL_TO_EMISSION.observe(max(0, now_ms - arrival_ms) / 1000)

    def dead_letter(
        self, partition: int, message: Message, reason: str, tx: PartitionTransaction
    ) -> list[Outgoing]:
        return [dead_letter_to(self._dead_letter_topic, DeadLetter.of(message, reason))]

    def _emitted(
        self, partition: int, bin_key: BinKey, tx: PartitionTransaction, now_ms: int
    ) -> list[Outgoing]:
        """The bin as it stands, summed from its shares (the batch's own included), to the
        metrics topic and, keyed by its model, to the alert evaluator; no longer dirty."""
        started_ms = _cpu_ms()
        tx.delete(DIRTY, bin_key)
        self._observe_label(partition, bin_key, now_ms)
        total = bin_total(_folded_shares(tx, bin_key).values())
        model, hour = bin_key
        value = None if total is None else self._bin_value(bin_key, total, now_ms)
        self._budget.spend(_cpu_ms() - started_ms)
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


def _mark_dirty(tx: PartitionTransaction, bins: list[BinKey]) -> None:
    """Mark the bins not marked yet: under a backlog a bin stays dirty across many
    batches, and marking it again cost a store write and a changelog record each time."""
    marks = tx.get_many(DIRTY, bins)
    for bin_key, mark in zip(bins, marks, strict=True):
        if mark is None:
            tx.set(DIRTY, bin_key, MARKED)


class _Received:
    """A batch's records: the deltas by (share, version), a repeat overwriting itself;
    the snapshots in order; the label arrivals they carry. A message without key or value
    (none is written) is skipped."""

    def __init__(self) -> None:
        self.deltas: dict[DeltaKey, Share] = {}
        self.snapshots: list[tuple[ShareKey, Share]] = []
        self.staged: list[tuple[StagedKey, Share]] = []
        self.done: list[tuple[DoneKey, tuple[int, int]]] = []
        self._labels: list[tuple[ShareKey, int | None, int]] = []

    def add(self, message: Message) -> None:
        raw_key, value = message.key(), message.value()
        if raw_key is None or value is None:
            return
        partial = BIN_PARTIAL.decode(value)
        if partial.kind == DONE_FORMAT:  # keyed by the model, not a bin
            done_key = (TEXT.decode(raw_key), partial.generation, partial.partition)
            self.done.append((done_key, (partial.share.version, partial.partitions)))
            return
        model, hour = BIN_KEY.decode(raw_key)
        key = (model, hour, partial.partition)
        if partial.kind == STAGED_FORMAT:
            staged_key = (model, partial.generation, hour, partial.partition)
            self.staged.append((staged_key, partial.share))
            return
        if partial.delta:
            self.deltas[(*key, partial.share.version)] = partial.share
        else:
            self.snapshots.append((key, partial.share))
        arrival_ms = label_arrival(message.headers())
        if arrival_ms is not None:
            snapshot_version = None if partial.delta else partial.share.version
            self._labels.append((key, snapshot_version, arrival_ms))

    def labels(self, stored: Mapping[ShareKey, Share | None]) -> dict[BinKey, int]:
        """Per bin, the earliest label arrival of the batch's deltas and of its snapshots
        that replace the ``stored`` share (a snapshot delivered again is no new label)."""
        earliest: dict[BinKey, int] = {}
        for key, snapshot_version, arrival_ms in self._labels:
            if snapshot_version is None or supersedes(Share(snapshot_version), stored[key]):
                bin_key = bin_of(key)
                earliest[bin_key] = min(arrival_ms, earliest.get(bin_key, arrival_ms))
        return earliest


def _replace(tx: PartitionTransaction, key: ShareKey, share: Share) -> None:
    """A share in place of the one kept (a newer snapshot, or a generation's): the deltas
    it holds (no newer than it) go."""
    tx.set(SHARES, key, share)
    model, hour, source = key
    for delta_key, delta in list(tx.items(DELTAS, shares_of((model, hour)))):
        if delta_key[2] == source and delta.version <= share.version:
            tx.delete(DELTAS, delta_key)


def _folded_shares(tx: PartitionTransaction, bin_key: BinKey) -> dict[ShareKey, Share]:
    """The bin's shares, each with its deltas folded in (stored so, the deltas deleted).
    While a generation of the model is being built, the deltas newer than a partition's
    share in it are folded into that one too: it takes over once complete."""
    shares = dict(tx.items(SHARES, shares_of(bin_key)))
    pending: dict[ShareKey, list[Share]] = {}
    for delta_key, delta in list(tx.items(DELTAS, shares_of(bin_key))):
        model, hour, source, _ = delta_key
        pending.setdefault((model, hour, source), []).append(delta)
        tx.delete(DELTAS, delta_key)
    building = tx.get(GENERATIONS, bin_key[0])
    for key, deltas in pending.items():
        share = folded(shares.get(key), deltas)
        if share is not None:
            tx.set(SHARES, key, share)
            shares[key] = share
        if building is not None:
            _fold_staged(tx, key, building, deltas)
    return shares


def _fold_staged(
    tx: PartitionTransaction, key: ShareKey, generation: int, deltas: list[Share]
) -> None:
    """Fold deltas into the partition's share in the generation: the one it sent, or, for
    a bin it sent none of (its events came after the rebuild), an empty one as of its
    rebuild; nothing before the partition's rebuild reached here (its share will hold
    them)."""
    model, hour, source = key
    staged_key = (model, generation, hour, source)
    staged = tx.get(STAGED, staged_key)
    if staged is None:
        done = tx.get(GENERATION_DONE, (model, generation, source))
        staged = None if done is None else Share(done[0], {})
    if staged is not None:
        share = folded(staged, deltas)
        if share is not None:
            tx.set(STAGED, staged_key, share)


def _building(tx: PartitionTransaction, model: str, generation: int) -> bool:
    """Whether records of ``generation`` count: it is the model's newest. A newer one than
    the one being built replaces it (what was kept of the older goes)."""
    current = tx.get(GENERATIONS, model)
    if current is not None and generation < current:
        return False
    if current != generation:
        _delete_under(tx, f"{model}/".encode())
        tx.set(GENERATIONS, model, generation)
    return True


def _stage(tx: PartitionTransaction, staged: tuple[StagedKey, Share]) -> None:
    key, share = staged
    model, generation, _, _ = key
    if _building(tx, model, generation):
        tx.set(STAGED, key, share)


def _count_done(tx: PartitionTransaction, done: tuple[DoneKey, tuple[int, int]]) -> list[BinKey]:
    """Count a partition's word; with every partition's, swap the generation in: the bins
    whose shares it changed."""
    key, (version, partitions) = done
    model, generation, _ = key
    if not _building(tx, model, generation):
        return []
    tx.set(GENERATION_DONE, key, (version, partitions))
    prefix = generation_prefix(model, generation)
    versions = {
        source: done_version
        for (_, _, source), (done_version, _) in tx.items(GENERATION_DONE, prefix)
    }
    if len(versions) < partitions:
        return []
    return _swap(tx, model, generation, versions)


def _swap(
    tx: PartitionTransaction, model: str, generation: int, versions: dict[int, int]
) -> list[BinKey]:
    """The model's shares replaced by the generation's, at once (one batch): a share the
    generation has none of becomes empty as of its partition's rebuild. The deltas newer
    than a share stay, to be folded into it."""
    prefix = generation_prefix(model, generation)
    staged = {(hour, source): share for (_, _, hour, source), share in tx.items(STAGED, prefix)}
    changed: dict[BinKey, None] = {}
    for (_, hour, source), _ in list(tx.items(SHARES, f"{model}/".encode())):
        if (hour, source) not in staged and source in versions:
            staged[(hour, source)] = Share(versions[source], {})
    for (hour, source), share in staged.items():
        _replace(tx, (model, hour, source), share)
        changed[(model, hour)] = None
    _delete_under(tx, prefix)
    tx.delete(GENERATIONS, model)
    return list(changed)


def _delete_under(tx: PartitionTransaction, prefix: bytes) -> None:
    """Forget the staged shares and done words under ``prefix`` (a model's, or one of
    its generations')."""
    for staged_key, _ in list(tx.items(STAGED, prefix)):
        tx.delete(STAGED, staged_key)
    for done_key, _ in list(tx.items(GENERATION_DONE, prefix)):
        tx.delete(GENERATION_DONE, done_key)
