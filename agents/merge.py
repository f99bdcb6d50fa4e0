"""The merge agent: ingest messages in; events, bin shares and dead letters out.

It only moves data between the topic, the pure merge rules (``state.events``), the bin
accumulators (through ``agents.partials``), the deletion requests (``agents.deletions``)
and the partition store; every decision is made in ``state``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import orjson
from confluent_kafka import Message

from agents.deletions import DeletionBudget, DeletionRecords, DeletionRequests
from agents.partials import PartialBins
from agents.runtime import BatchResult, Outgoing
from state.commands import Command, Delete, DeletionCommand, Insert, Update, event_key
from state.counters import ModelCounters, counters_update
from state.events import (
    BatchMerge,
    ExpiredUpdate,
    MergeOutcome,
    ParkedUpdate,
    StoredEvent,
    expire_parked,
)
from state.hour_index import HOURS, index_changes
from state.models import ModelSpec
from state.registered import RegisteredModel
from state.store import PartitionStore, Write, table_write
from topics.dead_letters import DeadLetter
from topics.messages import decode_ingest

EVENTS = "events"
PARKED = "parked"
COUNTERS = "counters"

UNATTRIBUTED = "-"


class StoreView:
    """The ``EventStore`` the merge rules read: one multi-get for the batch's own keys;
    any other key (found by a time-range deletion) is read when asked for."""

    def __init__(self, store: PartitionStore, keys: list[str]) -> None:
        self._store = store
        encoded = [key.encode() for key in keys]
        self._events = dict(zip(keys, store.get_many(EVENTS, encoded), strict=True))
        self._parked = dict(zip(keys, store.get_many(PARKED, encoded), strict=True))

    def get_event(self, key: str) -> StoredEvent | None:
        raw = self._events[key] if key in self._events else self._store.get(EVENTS, key.encode())
        return None if raw is None else decode_event(raw)

    def get_parked(self, key: str) -> tuple[ParkedUpdate, ...]:
        raw = self._parked[key] if key in self._parked else self._store.get(PARKED, key.encode())
        if raw is None:
            return ()
        return tuple(ParkedUpdate.from_dict(item) for item in orjson.loads(raw))


def decode_event(raw: bytes) -> StoredEvent:
    return StoredEvent.from_dict(orjson.loads(raw))


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
    ) -> None:
        self._model_of = model_of
        self._deletions = DeletionRequests(ingest_topic, deletion_batch_size, deletion_budget)
        self._partials = PartialBins(model_of, bin_partials_topic)
        self._ingest_topic = ingest_topic
        self._dead_letter_topic = dead_letter_topic
        self._max_event_bytes = max_event_bytes
        self._parked_limit = parked_updates_per_event
        self._parked_timeout_ms = int(parked_update_timeout_s * 1000)

    def handle(
        self, partition: int, messages: Sequence[Message], store: PartitionStore
    ) -> BatchResult:
        commands: list[Command | DeletionCommand] = []
        raw_values: list[bytes] = []
        dead: list[DeadLetter] = []
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
            else:
                commands.append(decoded)
        keys = list(
            {event_key(c.model_key, c.event_id)
             for c in commands if isinstance(c, Insert | Update | Delete)}
        )  # fmt: skip
        merge = BatchMerge(StoreView(store, keys), self._spec, self._parked_limit)
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
        writes = _table_writes(outcome)
        writes.extend(deletions.writes())
        writes.extend(self._counter_writes(store, outcome, dead))
        version = messages[-1].offset() + 1
        bin_writes, snapshots = self._partials.apply(partition, version, outcome.changes, store)
        writes.extend(bin_writes)
        outgoing = [*snapshots, *(self._outgoing(letter) for letter in dead), *continuations]
        return BatchResult(writes, outgoing)

    def _spec(self, model: str) -> ModelSpec | None:
        registered = self._model_of(model)
        return None if registered is None else registered.spec

    def tick(self, partition: int, store: PartitionStore, now_ms: int) -> BatchResult:
        """Dead-letter updates whose insert did not come within the timeout; resume range
        deletions that the daily cap stopped, once a new UTC day has begun."""
        result = self._expire_parked(partition, store, now_ms)
        resumed = self._deletions.resume(partition, store, now_ms)
        result.writes.extend(resumed.writes)
        result.outgoing.extend(resumed.outgoing)
        return result

    def _expire_parked(self, partition: int, store: PartitionStore, now_ms: int) -> BatchResult:
        writes: list[Write] = []
        expired: list[ExpiredUpdate] = []
        for raw_key, raw in store.items(PARKED):
            parked = tuple(ParkedUpdate.from_dict(item) for item in orjson.loads(raw))
            kept, gone = expire_parked(raw_key.decode(), parked, now_ms, self._parked_timeout_ms)
            if gone:
                expired.extend(gone)
                writes.append(table_write(PARKED, raw_key, _encode_parked(kept)))
        letters = [self._expired_letter(partition, item) for item in expired]
        writes.extend(self._counter_writes(store, MergeOutcome(), letters))
        return BatchResult(writes, [self._outgoing(letter) for letter in letters])

    # --- dead letters and counters ------------------------------------------------------

    def _dead_letter(self, message: Message, reason: str) -> DeadLetter:
        return DeadLetter(
            key=message.key(),
            value=message.value(),
            reason=reason,
            source_topic=message.topic(),
            source_partition=message.partition(),
            source_offset=message.offset(),
        )

    def _expired_letter(self, partition: int, item: ExpiredUpdate) -> DeadLetter:
        update = item.parked.update
        return DeadLetter(
            key=item.key.encode(),
            value=item.parked.raw_value.encode(),
            reason=(
                f"update of event {update.event_id!r} waited {self._parked_timeout_ms // 1000}s "
                "and its insert never arrived (DRIFTLINE_PARKED_UPDATE_TIMEOUT_S)"
            ),
            source_topic=self._ingest_topic,
            source_partition=partition,
            source_offset=update.offset,
        )

    def _outgoing(self, letter: DeadLetter) -> Outgoing:
        return Outgoing(self._dead_letter_topic, letter.key, letter.value, letter.headers())

    def _counter_writes(
        self,
        store: PartitionStore,
        outcome: MergeOutcome,
        dead: list[DeadLetter],
    ) -> list[Write]:
        if not dead and not outcome.dropped_fields:
            return []
        dead_by_model = Counter(_model_of_letter(letter) for letter in dead)
        writes = []
        for model, delta in counters_update(dead_by_model, outcome.dropped_fields).items():
            raw = store.get(COUNTERS, model.encode())
            current = ModelCounters() if raw is None else ModelCounters.from_dict(orjson.loads(raw))
            total = current.plus(delta)
            writes.append(table_write(COUNTERS, model.encode(), orjson.dumps(total.to_dict())))
        return writes


def _model_of_letter(letter: DeadLetter) -> str:
    """Attribute a dead letter to its model when its key names one."""
    if letter.key is None:
        return UNATTRIBUTED
    parts = letter.key.split(b"/")
    if len(parts) < 3:
        return UNATTRIBUTED
    return (parts[0] + b"/" + parts[1]).decode(errors="replace")


def _table_writes(outcome: MergeOutcome) -> list[Write]:
    writes = [
        table_write(EVENTS, key.encode(), None if event is None else orjson.dumps(event.to_dict()))
        for key, event in outcome.events.items()
    ]
    writes.extend(
        table_write(HOURS, index_key, b"" if present else None)
        for index_key, present in index_changes(outcome.previous, outcome.events)
    )
    writes.extend(
        table_write(PARKED, key.encode(), _encode_parked(parked))
        for key, parked in outcome.parked.items()
    )
    return writes


def _encode_parked(parked: tuple[ParkedUpdate, ...]) -> bytes | None:
    if not parked:
        return None
    return orjson.dumps([item.to_dict() for item in parked])
