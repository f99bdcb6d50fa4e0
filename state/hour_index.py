"""The hour index: which events of a model fall in which hour, per partition.

A time-range deletion or an event slice must find a model's events in a range without
scanning the whole events table. The index is a table next to the events whose keys sort
by model, then hour, then event id, so one hour of one model is one prefix scan. It is
kept in the same atomic batch as the events it indexes, so the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from driftline.state.bins import HOUR_MS
from driftline.state.events import StoredEvent
from driftline.state.store import PartitionStore

HOURS = "hours"
_SEP = "\x00"
# Hours as fixed-width decimals sort in time order (good until the year 2^40 ms or so).
_HOUR_DIGITS = 10


def hour_prefix(model: str, hour: int) -> bytes:
    return f"{model}{_SEP}{hour:0{_HOUR_DIGITS}d}{_SEP}".encode()


def index_key(model: str, event: StoredEvent) -> bytes:
    return hour_prefix(model, event.timestamp_ms // HOUR_MS) + event.event_id.encode()


def event_id_of(index_key_: bytes) -> str:
    return index_key_.split(_SEP.encode(), 2)[2].decode()


def indexed_in_range(
    store: PartitionStore, model: str, start_ms: int, end_ms: int, after: bytes = b""
) -> Iterator[tuple[bytes, str]]:
    """(index key, event id) of the model's events in the hours that ``[start_ms, end_ms)``
    touches, in index order, from the first key past ``after``.

    Whole hours: an event near either end may lie outside the range, so the caller checks
    the event's own time.
    """
    scope = f"{model}{_SEP}".encode()
    first = hour_prefix(model, start_ms // HOUR_MS)
    if after:
        first = max(first, after + _SEP.encode())
    past = hour_prefix(model, (end_ms - 1) // HOUR_MS + 1)
    for key, _ in store.items(HOURS, scope, start=first):
        if key >= past:
            return
        yield key, event_id_of(key)


def index_changes(
    previous: Mapping[str, StoredEvent | None], current: Mapping[str, StoredEvent | None]
) -> Iterator[tuple[bytes, bool]]:
    """(index key, present) pairs that bring the index from ``previous`` to ``current``.

    Both map events-table keys (``project/model/event_id``) to the event before and after
    a batch; only an insert, a delete or a move to another hour touches the index.
    """
    for key, after in current.items():
        before = previous.get(key)
        model = key.split("/", 2)
        model_name = f"{model[0]}/{model[1]}"
        old = None if before is None else index_key(model_name, before)
        new = None if after is None else index_key(model_name, after)
        if old == new:
            continue
        if old is not None:
            yield old, False
        if new is not None:
            yield new, True
