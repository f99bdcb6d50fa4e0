"""The hour index: which events of a model fall in which hour, per partition.

A time-range deletion or an event slice must find a model's events in a range without
scanning the whole events table. The index (``HOURS``, declared in
``state.partition_tables``) is a table next to the events whose keys sort by model, then
hour, then event id, so one hour of one model is one prefix scan. It is written in the
same transaction as the events it indexes, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from driftline.state.bins import HOUR_MS
from driftline.state.events import StoredEvent
from driftline.state.names import model_key
from driftline.state.partition_tables import EVENTS, HOURS, HourKey, hour_prefix
from driftline.state.tables import PartitionTransaction


def index_key(model: str, event: StoredEvent) -> HourKey:
    return model, event.timestamp_ms // HOUR_MS, event.event_id


def indexed_in_range(
    tx: PartitionTransaction, model: str, start_ms: int, end_ms: int, after: bytes = b""
) -> Iterator[HourKey]:
    """Index keys of the model's events in the hours that ``[start_ms, end_ms)`` touches,
    in index order, from the first key past the encoded key ``after``.

    Whole hours: an event near either end may lie outside the range, so the caller checks
    the event's own time.
    """
    scope = f"{model}\0".encode()
    first = hour_prefix(model, start_ms // HOUR_MS)
    if after:
        first = max(first, after + b"\0")
    last_hour = (end_ms - 1) // HOUR_MS
    for key, _ in tx.items(HOURS, scope, start=first):
        if key[1] > last_hour:
            return
        yield key


def index_changes(
    previous: Mapping[str, StoredEvent | None], current: Mapping[str, StoredEvent | None]
) -> Iterator[tuple[HourKey, bool]]:
    """(index key, present) pairs that bring the index from ``previous`` to ``current``.

    Both map events-table keys (``project/model/event_id``) to the event before and after
    a batch; only an insert, a delete or a move to another hour touches the index.
    """
    for key, after in current.items():
        before = previous.get(key)
        project_id, model_id, _ = key.split("/", 2)
        model_name = model_key(project_id, model_id)
        old = None if before is None else index_key(model_name, before)
        new = None if after is None else index_key(model_name, after)
        if old == new:
            continue
        if old is not None:
            yield old, False
        if new is not None:
            yield new, True


def reindex(tx: PartitionTransaction, previous: Mapping[str, StoredEvent | None]) -> None:
    """Bring the index in line with the events the batch wrote (``previous``: each written
    key's event before the batch), once, when the batch's events are final."""
    after = tx.get_many(EVENTS, list(previous))
    current = dict(zip(previous, after, strict=True))
    for key, present in index_changes(previous, current):
        if present:
            tx.set(HOURS, key, b"")
        else:
            tx.delete(HOURS, key)
