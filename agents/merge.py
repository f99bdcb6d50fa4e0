"""The merge agent: ingest messages in; events, bin shares and dead letters out.

It only moves data between the topic, the pure merge rules (``state.events``), the bin
accumulators (through ``agents.partials``), the deletion requests (``agents.deletions``)
and the partition store; every decision is made in ``state``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import orjson
from confluent_kafka import Message

from driftline.agents import parked
from driftline.agents.bin_shares import BinShares
from driftline.agents.deletions import DeletionBudget, DeletionRecords, DeletionRequests
from driftline.agents.runtime import BatchResult, Outgoing
from driftline.state import exact_json
from driftline.state.commands import Command, Delete, DeletionCommand, Insert, Update, event_key
from driftline.state.counters import ModelCounters, counters_update
from driftline.state.events import (
    BatchMerge,
    ExpiredUpdate,
    MergeOutcome,
    ParkedUpdate,
    StoredEvent,
    expire_parked,
)
from driftline.state.hour_index import HOURS, index_changes
from driftline.state.registered import RegisteredModel
from driftline.state.spec import ModelSpec
from driftline.state.store import PartitionStore, Write, table_write
from driftline.state.tables import PartitionTransaction
from driftline.topics.clients import DEAD_LETTER_MAX_BYTES
from driftline.topics.dead_letters import DeadLetter, letter_model
from driftline.topics.messages import FORWARDED_FROM, decode_ingest
from driftline.topics.partitioning import partitions_for

EVENTS = "events"
COUNTERS = "counters"

UNATTRIBUTED = "-"

# Waiting updates a tick dead-letters at most; more wait for the next tick (a second).
EXPIRIES_PER_TICK = 10_000


class StoreView:
    """The ``EventStore`` the merge rules read: one multi-get for the batch's own keys;
    any other key (found by a time-range deletion) is read when asked for."""

    def __init__(self, store: PartitionStore, keys: list[str]) -> None:
        self._store = store
        encoded = [key.encode() for key in keys]
        self._events = dict(zip(keys, store.get_many(EVENTS, encoded), strict=True))
        self._waiting = dict(zip(keys, store.get_many(parked.PARKED, encoded), strict=True))
        self._parked: dict[str, tuple[ParkedUpdate, ...]] = {}

    def get_event(self, key: str) -> StoredEvent | None:
        raw = self._events[key] if key in self._events else self._store.get(EVENTS, key.encode())
        return None if raw is None else decode_event(raw)

    def get_parked(self, key: str) -> tuple[ParkedUpdate, ...]:
        if key not in self._parked:
            raw = (
                self._waiting[key]
                if key in self._waiting
                else self._store.get(parked.PARKED, key.encode())
            )
            self._parked[key] = parked.load(self._store, key, raw)
        return self._parked[key]


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


def encode_event(event: StoredEvent) -> bytes:
    return exact_json.dumps_tagged(event.to_dict())


def decode_event(raw: bytes) -> StoredEvent:
    return StoredEvent.from_dict(exact_json.loads_tagged(raw))


class MergeHandler:
    def __init__(
        self,
        model_of: Callable[[str], RegisteredModel | None],
        ingest_topic: str,
        dead_letter_topic: str,
        max_event_bytes: int,
        parked_updates_per_event: int,
        parked_update_timeout_s: float,
        bin_partials_topic: str,
        deletion_batch_size: int,
        deletion_budget: DeletionBudget,
        ingest_partitions: int,
        clock_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self._model_of = model_of
        self._deletions = DeletionRequests(
            ingest_topic, deletion_batch_size, deletion_budget, clock_ms
        )
        self._partials = BinShares(model_of, bin_partials_topic)
        self._ingest_topic = ingest_topic
        self._dead_letter_topic = dead_letter_topic
        self._max_event_bytes = max_event_bytes
        self._parked_limit = parked_updates_per_event
        self._parked_timeout_ms = int(parked_update_timeout_s * 1000)
        self._partitions = ingest_partitions

    def handle(
        self, partition: int, messages: Sequence[Message], tx: PartitionTransaction, now_ms: int
    ) -> list[Outgoing]:
        store = tx.store
        commands: list[Command | DeletionCommand] = []
        raw_values: list[bytes] = []
        dead: list[DeadLetter] = []
        forwarded: list[Outgoing] = []
        forwarded_by_model: Counter[str] = Counter()
        homes = partitions_for([m.key() or b"" for m in messages], self._partitions)
        for ref, message in enumerate(messages):
            value = message.value()
            raw_values.append(value or b"")
            decoded = decode_ingest(
                message.key(),
                value,
                received_ms=message.timestamp()[1],
                offset=message.offset(),
                ref=ref,
                max_bytes=self._max_event_bytes,
            )
            if isinstance(decoded, str):
                dead.append(self._dead_letter(message, decoded))
            elif homes[ref] != partition and isinstance(decoded, Insert | Update | Delete):
                # Another partitioner put it here: its event lives on its key's partition.
                forwarded.append(self._forwarded(message, homes[ref]))
                forwarded_by_model[decoded.model_key] += 1
            else:
                commands.append(decoded)
        keys = list(
            {event_key(c.model_key, c.event_id)
             for c in commands if isinstance(c, Insert | Update | Delete)}
        )  # fmt: skip
        view = StoreView(store, keys)
        merge = BatchMerge(view, self._spec, self._parked_limit)
        deletions = DeletionRecords(store)
        continuations: list[Outgoing] = []
        for command in commands:
            if isinstance(command, Insert | Update | Delete):
                merge.apply(command, raw_values[command.ref])
            elif self._spec(command.model_key) is None:
                reason = f"model {command.model_key!r} is not registered"
                dead.append(self._dead_letter(messages[command.ref], reason))
            else:
                continuations.extend(
                    self._deletions.apply(partition, command, merge, deletions, store)
                )
        outcome = merge.outcome
        dead.extend(self._dead_letter(messages[r.ref], r.reason) for r in outcome.rejections)
        writes = _table_writes(outcome, view)
        writes.extend(deletions.writes())
        writes.extend(self._counter_writes(store, outcome, dead, forwarded_by_model))
        version = messages[-1].offset() + 1
        snapshots = self._partials.apply(partition, version, outcome.changes, tx)
        tx.add_writes(writes)
        letters = (self._outgoing(letter) for letter in dead)
        return [*snapshots, *letters, *continuations, *forwarded]

    def _forwarded(self, message: Message, home: int) -> Outgoing:
        """The message as it came, for its key's partition: same key, value, headers and
        Kafka timestamp (the event time of an insert without one), and where it came from."""
        origin = f"{message.partition()}:{message.offset()}".encode()
        headers = [*(message.headers() or []), (FORWARDED_FROM, origin)]
        return Outgoing(self._ingest_topic, message.key(), message.value(), headers, home,
                        message.timestamp()[1])  # fmt: skip

    def _spec(self, model: str) -> ModelSpec | None:
        registered = self._model_of(model)
        return None if registered is None else registered.spec

    def tick(self, partition: int, tx: PartitionTransaction, now_ms: int) -> list[Outgoing]:
        """Dead-letter updates whose insert did not come within the timeout; resume range
        deletions that the daily cap stopped, once a new UTC day has begun."""
        result = self._expire_parked(partition, tx.store, now_ms)
        resumed = self._deletions.resume(partition, tx.store, now_ms)
        tx.add_writes([*result.writes, *resumed.writes])
        return [*result.outgoing, *resumed.outgoing]

    def _expire_parked(self, partition: int, store: PartitionStore, now_ms: int) -> BatchResult:
        writes: list[Write] = []
        expired: list[ExpiredUpdate] = []
        deadline = now_ms - self._parked_timeout_ms
        for key in parked.waited_since(store, deadline, EXPIRIES_PER_TICK):
            waiting = parked.load(store, key, store.get(parked.PARKED, key.encode()))
            kept, gone = expire_parked(key, waiting, now_ms, self._parked_timeout_ms)
            expired.extend(gone)
            writes.extend(parked.writes(key, waiting, kept))
        letters = [self._expired_letter(partition, item) for item in expired]
        writes.extend(self._counter_writes(store, MergeOutcome(), letters))
        return BatchResult(writes, [self._outgoing(letter) for letter in letters])

    # --- dead letters and counters ------------------------------------------------------

    def dead_letter(
        self, partition: int, message: Message, reason: str, tx: PartitionTransaction
    ) -> list[Outgoing]:
        """A message the engine could not apply: its dead letter, counted for its model."""
        letter = self._dead_letter(message, reason)
        tx.add_writes(self._counter_writes(tx.store, MergeOutcome(), [letter]))
        return [self._outgoing(letter)]

    def _dead_letter(self, message: Message, reason: str) -> DeadLetter:
        return DeadLetter.of(message, reason)

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
        fitted = letter.fitted(DEAD_LETTER_MAX_BYTES)
        return Outgoing(self._dead_letter_topic, fitted.key, fitted.value, fitted.headers())

    def _counter_writes(
        self,
        store: PartitionStore,
        outcome: MergeOutcome,
        dead: list[DeadLetter],
        forwarded: Mapping[str, int] | None = None,
    ) -> list[Write]:
        if not dead and not outcome.dropped_fields and not forwarded:
            return []
        dead_by_model = Counter(_model_of_letter(letter) for letter in dead)
        writes = []
        deltas = counters_update(dead_by_model, outcome.dropped_fields, forwarded or {})
        for model, delta in deltas.items():
            raw = store.get(COUNTERS, model.encode())
            current = ModelCounters() if raw is None else ModelCounters.from_dict(orjson.loads(raw))
            total = current.plus(delta)
            writes.append(table_write(COUNTERS, model.encode(), orjson.dumps(total.to_dict())))
        return writes


def _model_of_letter(letter: DeadLetter) -> str:
    """Attribute a dead letter to its model when its key names one."""
    return letter_model(letter.key) or UNATTRIBUTED


def _table_writes(outcome: MergeOutcome, view: StoreView) -> list[Write]:
    writes = [
        table_write(EVENTS, key.encode(), None if event is None else encode_event(event))
        for key, event in outcome.events.items()
    ]
    writes.extend(
        table_write(HOURS, index_key, b"" if present else None)
        for index_key, present in index_changes(outcome.previous, outcome.events)
    )
    for key, after in outcome.parked.items():
        writes.extend(parked.writes(key, view.get_parked(key), after))
    return writes
