"""The tables of updates that wait for their insert, laid out so that none grows.

Once one changelog record held an event's whole list of waiting updates, each twice (the
raw message and its columns): five 200 KB updates outgrew the broker's record limit and
the partition crash-looped. Now each waiting update is a record of its own, holding only
its original message (the columns are decoded from it again when the insert comes):

- ``parked``: event key -> ``[[offset, received_ms], ...]``, which updates wait (a few
  bytes each; their count is bounded by ``DRIFTLINE_PARKED_UPDATES_PER_EVENT``). The
  merge agent multi-gets it for every batch, so it stays small.
- ``parked-updates``: ``event key \\0 offset`` -> the update's original message.
- ``parked-by-time``: ``received_ms \\0 event key \\0 offset`` -> ``b""``, so the tick finds
  the updates whose wait is over by one range scan from the oldest, instead of reading
  every waiting update every second.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from driftline.state.commands import Update
from driftline.state.events import ParkedUpdate
from driftline.state.store import PartitionStore, Write, table_write
from driftline.topics.messages import decode_ingest

PARKED = "parked"
PARKED_UPDATES = "parked-updates"
PARKED_BY_TIME = "parked-by-time"

_SEP = b"\x00"
# Fixed-width decimals sort as numbers: milliseconds until the year 2286, offsets to 10^20.
_MS_DIGITS = 13
_OFFSET_DIGITS = 20


def _update_key(key: bytes, offset: int) -> bytes:
    return key + _SEP + str(offset).zfill(_OFFSET_DIGITS).encode()


def _time_key(received_ms: int, key: bytes, offset: int) -> bytes:
    return str(received_ms).zfill(_MS_DIGITS).encode() + _SEP + _update_key(key, offset)


def waiting(raw: bytes | None) -> list[tuple[int, int]]:
    """(offset, received_ms) of an event's waiting updates, from its ``parked`` value."""
    return [] if raw is None else [(offset, received) for offset, received in orjson.loads(raw)]


def load(store: PartitionStore, key: str, raw: bytes | None) -> tuple[ParkedUpdate, ...]:
    """An event's waiting updates, oldest first, given its ``parked`` value."""
    entries = waiting(raw)
    if not entries:
        return ()
    encoded = key.encode()
    bodies = store.get_many(PARKED_UPDATES, [_update_key(encoded, o) for o, _ in entries])
    return tuple(
        ParkedUpdate(_decoded(encoded, body, offset, received), body)
        for (offset, received), body in zip(entries, bodies, strict=True)
        if body is not None
    )


def _decoded(key: bytes, body: bytes, offset: int, received_ms: int) -> Update:
    command = decode_ingest(
        key, body, received_ms=received_ms, offset=offset, ref=0, max_bytes=len(body)
    )
    if not isinstance(command, Update):
        raise ValueError(f"a waiting update no longer decodes as one: {command!r}")
    return command


def writes(
    key: str, before: tuple[ParkedUpdate, ...], after: tuple[ParkedUpdate, ...]
) -> list[Write]:
    """What brings an event's waiting updates from ``before`` to ``after``."""
    encoded = key.encode()
    kept = {p.update.offset for p in after}
    had = {p.update.offset for p in before}
    out = []
    for entry in before:
        if entry.update.offset not in kept:
            out.extend(_entry_writes(encoded, entry, present=False))
    for entry in after:
        if entry.update.offset not in had:
            out.extend(_entry_writes(encoded, entry, present=True))
    summary = [[p.update.offset, p.update.received_ms] for p in after]
    out.append(table_write(PARKED, encoded, orjson.dumps(summary) if summary else None))
    return out


def _entry_writes(key: bytes, parked: ParkedUpdate, present: bool) -> list[Write]:
    offset, received = parked.update.offset, parked.update.received_ms
    return [
        table_write(
            PARKED_UPDATES, _update_key(key, offset), parked.raw_value if present else None
        ),
        table_write(PARKED_BY_TIME, _time_key(received, key, offset), b"" if present else None),
    ]


def waited_since(store: PartitionStore, deadline_ms: int, limit: int) -> Iterator[str]:
    """Keys of events with an update received at or before ``deadline_ms``, oldest first,
    at most ``limit`` updates' worth (the rest waits for the next tick)."""
    seen: set[str] = set()
    for count, (time_key, _) in enumerate(store.items(PARKED_BY_TIME)):
        received, rest = time_key.split(_SEP, 1)
        if count >= limit or int(received) > deadline_ms:
            return
        key = rest.rsplit(_SEP, 1)[0].decode()
        if key not in seen:
            seen.add(key)
            yield key
