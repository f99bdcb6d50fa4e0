"""Updates that wait for their insert, read and written through the batch's transaction.

Once one changelog record held an event's whole list of waiting updates, each twice (the
raw message and its columns): five 200 KB updates outgrew the broker's record limit and
the partition crash-looped. Now each waiting update is a record of its own, holding only
its original message (the columns are decoded from it again when the insert comes); the
three tables (``PARKED``, ``PARKED_UPDATES``, ``PARKED_BY_TIME``) are declared, with their
layout, in ``state.partition_tables``.

Decoding a waiting update is the wire format's business (``topics.messages``), which the
merge rules in ``state`` do not import: ``MergeTables`` hands them the events and the
waiting updates already decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from driftline.state.commands import Update
from driftline.state.events import ParkedUpdate, StoredEvent
from driftline.state.partition_tables import (
    EVENTS,
    PARKED,
    PARKED_BY_TIME,
    PARKED_UPDATES,
    Waiting,
)
from driftline.state.tables import PartitionTransaction
from driftline.topics.messages import decode_ingest


class MergeTables:
    """The merge rules' ``EventTables`` over one batch's transaction."""

    def __init__(self, tx: PartitionTransaction) -> None:
        self._tx = tx
        # Bound once: the merge rules read every event of a batch through it.
        self.get_event: Callable[[str], StoredEvent | None] = partial(tx.get, EVENTS)

    def prefetch(self, keys: list[str]) -> None:
        """Read the batch's own event keys in one multi-get per table, not one by one."""
        self._tx.get_many(EVENTS, keys)
        self._tx.get_many(PARKED, keys)

    def set_event(self, key: str, event: StoredEvent | None) -> None:
        if event is None:
            self._tx.delete(EVENTS, key)
        else:
            self._tx.set(EVENTS, key, event)

    def get_parked(self, key: str) -> tuple[ParkedUpdate, ...]:
        waiting = self._tx.get(PARKED, key)
        return _loaded(self._tx, key, waiting) if waiting else ()  # most events: none wait

    def set_parked(self, key: str, parked: tuple[ParkedUpdate, ...]) -> None:
        save(self._tx, key, parked)


def load(tx: PartitionTransaction, key: str) -> tuple[ParkedUpdate, ...]:
    """An event's waiting updates, oldest first."""
    return _loaded(tx, key, tx.get(PARKED, key) or ())


def _loaded(tx: PartitionTransaction, key: str, waiting: Waiting) -> tuple[ParkedUpdate, ...]:
    bodies = tx.get_many(PARKED_UPDATES, [(key, offset) for offset, _ in waiting])
    encoded = key.encode()
    return tuple(
        ParkedUpdate(_decoded(encoded, body, offset, received), body)
        for (offset, received), body in zip(waiting, bodies, strict=True)
        if body is not None
    )


def _decoded(key: bytes, body: bytes, offset: int, received_ms: int) -> Update:
    command = decode_ingest(
        key, body, received_ms=received_ms, offset=offset, ref=0, max_bytes=len(body)
    )
    if not isinstance(command, Update):
        raise ValueError(f"a waiting update no longer decodes as one: {command!r}")
    return command


def save(tx: PartitionTransaction, key: str, parked: tuple[ParkedUpdate, ...]) -> None:
    """Leave ``parked`` as the event's waiting updates: the records of those no longer
    waiting go, those of the new ones come.

    Compared with what the transaction holds now, so an update parked and consumed within
    one batch leaves a tombstone in the changelog (the tables end the same)."""
    kept = {p.update.offset for p in parked}
    had = tx.get(PARKED, key) or ()
    for offset, received_ms in had:
        if offset not in kept:
            tx.delete(PARKED_UPDATES, (key, offset))
            tx.delete(PARKED_BY_TIME, (received_ms, key, offset))
    known = {offset for offset, _ in had}
    for entry in parked:
        offset, received_ms = entry.update.offset, entry.update.received_ms
        if offset not in known:
            tx.set(PARKED_UPDATES, (key, offset), entry.raw_value)
            tx.set(PARKED_BY_TIME, (received_ms, key, offset), b"")
    if parked:
        tx.set(PARKED, key, tuple((p.update.offset, p.update.received_ms) for p in parked))
    else:
        tx.delete(PARKED, key)


def waited_since(tx: PartitionTransaction, deadline_ms: int, limit: int) -> list[str]:
    """Keys of events with an update received at or before ``deadline_ms``, oldest first,
    at most ``limit`` updates' worth (the rest waits for the next tick)."""
    keys: dict[str, None] = {}
    for count, ((received_ms, key, _), _) in enumerate(tx.items(PARKED_BY_TIME)):
        if count >= limit or received_ms > deadline_ms:
            break
        keys[key] = None
    return list(keys)
