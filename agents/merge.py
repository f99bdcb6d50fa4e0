"""The merge processor: ingest messages in; events, bin shares and dead letters out.

It only moves data between the topic, the pure merge rules (``state.events``), the bin
accumulators (through ``agents.bin_shares``), the deletion requests (``agents.deletions``)
and the partition's tables (``state.partition_tables``, through the batch's transaction);
every decision is made in ``state``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Message

from driftline.agents import parked
from driftline.agents.bin_shares import BinShares
from driftline.agents.deletions import DeletionBudget, DeletionRequests
from driftline.agents.runtime import Outgoing, dead_letter_to
from driftline.state.bins import label_arrivals
from driftline.state.commands import (
    Command,
    Delete,
    DeletionCommand,
    Insert,
    RebuildBins,
    Update,
    event_key,
)
from driftline.state.counters import ModelCounters, counters_update
from driftline.state.events import BatchMerge, ExpiredUpdate, expire_parked
from driftline.state.hour_index import reindex
from driftline.state.partition_tables import COUNTERS
from driftline.state.registered import RegisteredModel
from driftline.state.spec import ModelSpec
from driftline.state.tables import PartitionTransaction
from driftline.topics.dead_letters import DeadLetter, letter_model
from driftline.topics.messages import FORWARDED_FROM, decode_ingest
from driftline.topics.partitioning import partitions_for

UNATTRIBUTED = "-"

# Waiting updates a tick dead-letters at most; more wait for the next tick (a second).
EXPIRIES_PER_TICK = 10_000


@dataclass
class _DecodedBatch:
    commands: list[Command | DeletionCommand | RebuildBins] = field(default_factory=list)
    # Each message's value by its position in the batch (a command's ``ref``).
    raw_values: list[bytes] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    forwarded: list[Outgoing] = field(default_factory=list)
    forwarded_by_model: Counter[str] = field(default_factory=Counter)


class MergeProcessor:
    def __init__(
        self,
        registered_model: Callable[[str], RegisteredModel | None],
        ingest_topic: str,
        dead_letter_topic: str,
        max_event_bytes: int,
        parked_updates_per_event: int,
        parked_update_timeout_s: float,
        bin_partials_topic: str,
        deletion_batch_size: int,
        deletion_budget: DeletionBudget,
        ingest_partitions: int,
        bins_partitions: int = 1,
    ) -> None:
        self._registered_model = registered_model
        self._deletions = DeletionRequests(ingest_topic, deletion_batch_size, deletion_budget)
        self._partials = BinShares(
            registered_model, bin_partials_topic, ingest_partitions, bins_partitions
        )
        self._ingest_topic = ingest_topic
        self._dead_letter_topic = dead_letter_topic
        self._max_event_bytes = max_event_bytes
        self._parked_limit = parked_updates_per_event
        self._parked_timeout_ms = int(parked_update_timeout_s * 1000)
        self._partitions = ingest_partitions

    def handle(
        self, partition: int, messages: Sequence[Message], tx: PartitionTransaction, now_ms: int
    ) -> list[Outgoing]:
        batch = self._decoded(partition, messages)
        tables = parked.MergeTables(tx)
        tables.prefetch(
            list({event_key(c.model_key, c.event_id)
                  for c in batch.commands if isinstance(c, Insert | Update | Delete)})
        )  # fmt: skip
        specs = self._specs({command.model_key for command in batch.commands})
        merge = BatchMerge(tables, specs, self._parked_limit)
        dead = batch.dead
        continuations: list[Outgoing] = []
        rebuilt: dict[str, int] = {}
        for command in batch.commands:
            if isinstance(command, Insert | Update | Delete):
                merge.apply(command, batch.raw_values[command.ref])
            elif command.model_key not in specs:
                reason = f"model {command.model_key!r} is not registered"
                dead.append(DeadLetter.of(messages[command.ref], reason))
            elif isinstance(command, RebuildBins):
                rebuilt[command.model_key] = command.generation  # after the batch's changes
            else:
                continuations.extend(self._deletions.apply(partition, command, merge, tx, now_ms))
        outcome = merge.outcome
        dead.extend(DeadLetter.of(messages[r.ref], r.reason) for r in outcome.rejections)
        reindex(tx, outcome.previous)
        _count(tx, dead, outcome.dropped_fields, batch.forwarded_by_model)
        version = messages[-1].offset() + 1
        arrivals = label_arrivals(outcome.changes, _label_times(batch.commands, specs))
        binned = self._partials.apply(partition, version, outcome.changes, tx, arrivals, rebuilt)
        letters = (self._outgoing(letter) for letter in dead)
        return [*binned, *letters, *continuations, *batch.forwarded]

    def _decoded(self, partition: int, messages: Sequence[Message]) -> _DecodedBatch:
        """The batch sorted into commands to apply here, messages to forward to their key's
        partition, and dead letters for what could not be read."""
        batch = _DecodedBatch()
        homes = partitions_for([m.key() or b"" for m in messages], self._partitions)
        for ref, message in enumerate(messages):
            value = message.value()
            batch.raw_values.append(value or b"")
            decoded = decode_ingest(
                message.key(),
                value,
                received_ms=message.timestamp()[1],
                offset=message.offset(),
                ref=ref,
                max_bytes=self._max_event_bytes,
            )
            if isinstance(decoded, str):
                batch.dead.append(DeadLetter.of(message, decoded))
            elif homes[ref] != partition and isinstance(decoded, Insert | Update | Delete):
                # Another partitioner put it here: its event lives on its key's partition.
                batch.forwarded.append(self._forwarded(message, homes[ref]))
                batch.forwarded_by_model[decoded.model_key] += 1
            else:
                batch.commands.append(decoded)
        return batch

    def _specs(self, models: Iterable[str]) -> dict[str, ModelSpec]:
        """The specs of the registered models among ``models``: one registry lookup per
        model a batch names, before the merge rules run (they never reach the registry)."""
        found = {model: self._registered_model(model) for model in models}
        return {model: registered.spec for model, registered in found.items() if registered}

    def _forwarded(self, message: Message, home: int) -> Outgoing:
        """The message as it came, for its key's partition: same key, value, headers and
        Kafka timestamp (the event time of an insert without one), and where it came from."""
        origin = f"{message.partition()}:{message.offset()}".encode()
        headers = [*(message.headers() or []), (FORWARDED_FROM, origin)]
        return Outgoing(self._ingest_topic, message.key(), message.value(), headers, home,
                        message.timestamp()[1])  # fmt: skip

    def tick(self, partition: int, tx: PartitionTransaction, now_ms: int) -> list[Outgoing]:
        """Dead-letter updates whose insert did not come within the timeout; resume range
        deletions that the daily cap stopped, once a new UTC day has begun."""
        expired = self._expire_parked(partition, tx, now_ms)
        resumed = self._deletions.resume(partition, tx, now_ms)
        return [*expired, *resumed]

    def _expire_parked(
        self, partition: int, tx: PartitionTransaction, now_ms: int
    ) -> list[Outgoing]:
        expired: list[ExpiredUpdate] = []
        deadline = now_ms - self._parked_timeout_ms
        for key in parked.waited_since(tx, deadline, EXPIRIES_PER_TICK):
            kept, gone = expire_parked(key, parked.load(tx, key), now_ms, self._parked_timeout_ms)
            expired.extend(gone)
            parked.save(tx, key, kept)
        letters = [self._expired_letter(partition, item) for item in expired]
        _count(tx, letters)
        return [self._outgoing(letter) for letter in letters]

    # --- dead letters -------------------------------------------------------------------

    def dead_letter(
        self, partition: int, message: Message, reason: str, tx: PartitionTransaction
    ) -> list[Outgoing]:
        """A message the engine could not apply: its dead letter, counted for its model."""
        letter = DeadLetter.of(message, reason)
        _count(tx, [letter])
        return [self._outgoing(letter)]

    def _expired_letter(self, partition: int, item: ExpiredUpdate) -> DeadLetter:
        update = item.parked.update
        return DeadLetter(
            key=item.key.encode(),
            value=item.parked.raw_value,
            reason=(
                f"update of event {update.event_id!r} waited {self._parked_timeout_ms // 1000}s "
                "and its insert never arrived (DRIFTLINE_PARKED_UPDATE_TIMEOUT_S)"
            ),
            source_topic=self._ingest_topic,
            source_partition=partition,
            source_offset=update.offset,
        )

    def _outgoing(self, letter: DeadLetter) -> Outgoing:
        return dead_letter_to(self._dead_letter_topic, letter)


def _label_times(
    commands: Sequence[Command | DeletionCommand | RebuildBins], specs: Mapping[str, ModelSpec]
) -> dict[tuple[str, str], int]:
    """Per (model, event id), the Kafka timestamp of the batch's first update carrying a
    target (a label): commands are in offset order."""
    found: dict[tuple[str, str], int] = {}
    for command in commands:
        if isinstance(command, Update):
            spec = specs.get(command.model_key)
            if spec is not None and any(target in command.columns for target in spec.targets):
                found.setdefault((command.model_key, command.event_id), command.received_ms)
    return found


def _count(
    tx: PartitionTransaction,
    dead: list[DeadLetter],
    dropped_fields: Mapping[tuple[str, str], int] | None = None,
    forwarded_by_model: Mapping[str, int] | None = None,
) -> None:
    """Add a batch's dead letters (each attributed to the model its key names, if any),
    dropped fields and forwarded messages to the models' counters."""
    dead_by_model = Counter(letter_model(letter.key) or UNATTRIBUTED for letter in dead)
    deltas = counters_update(dead_by_model, dropped_fields or {}, forwarded_by_model or {})
    for model, delta in deltas.items():
        tx.set(COUNTERS, model, (tx.get(COUNTERS, model) or ModelCounters()).plus(delta))
