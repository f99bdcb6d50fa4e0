"""Tables: each declared once, with its key and value codec; a batch reads its own writes.

A ``Table`` names a table of the partition store and says how its keys and values become
bytes. Processors never encode or decode table bytes themselves: they read and write
through a ``PartitionTransaction`` (quix-streams' ``PartitionTransaction`` is the model),
which

- decodes a value once, however often the batch reads it;
- serves the batch's own writes to its later reads, prefix scans included, so no
  processor keeps an overlay of what it wrote;
- encodes each written key once, when the batch is committed (``writes()``), however
  often the batch rewrote it.

The runtime turns those writes into the partition's changelog records and its atomic
RocksDB write; nothing reaches the store before the batch commits.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from driftline.state.store import PartitionStore, Write, store_key

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Codec(Generic[T]):
    """Bytes to and from one type; ``encode`` of a key must sort the way scans need."""

    encode: Callable[[T], bytes]
    decode: Callable[[bytes], T]


def _identity(raw: bytes) -> bytes:
    return raw


BYTES: Codec[bytes] = Codec(_identity, _identity)
# The methods themselves, not functions calling them: a key is encoded on every read and
# write of the merge processor's hot path.
TEXT: Codec[str] = Codec(str.encode, bytes.decode)


@dataclass(frozen=True, slots=True)
class Table(Generic[K, V]):
    """One table of a partition store: its name (the store-key prefix and the changelog's)
    and the codecs of its keys and values."""

    name: str
    key: Codec[K]
    value: Codec[V]


class PartitionTransaction:
    """One batch's view of one partition's tables: the store as of the last commit, plus
    what the batch has written so far."""

    def __init__(self, store: PartitionStore) -> None:
        self.store = store
        # table name -> encoded key -> decoded value (None: absent or deleted), for every
        # key the batch has read or written
        self._values: dict[str, dict[bytes, Any]] = {}
        # table name -> the encoded keys the batch wrote, in the order first written
        self._written: dict[str, dict[bytes, None]] = {}
        # table name -> the keys in ``_written``, sorted: kept from a table's first scan on,
        # so that a scan reads the batch's writes under its prefix without sorting all of
        # them (the bins stage scans a bin's keys once per emission, thousands per batch)
        self._written_sorted: dict[str, list[bytes]] = {}
        self._tables: dict[str, Table[Any, Any]] = {}

    # --- reads --------------------------------------------------------------------

    def get(self, table: Table[K, V], key: K) -> V | None:
        raw_key = table.key.encode(key)
        values = self._values.get(table.name)
        if values is None:
            values = self._values[table.name] = {}
        elif raw_key in values:
            known: V | None = values[raw_key]
            return known
        raw = self.store.get(table.name, raw_key)
        value = None if raw is None else table.value.decode(raw)
        values[raw_key] = value
        return value

    def get_many(self, table: Table[K, V], keys: Sequence[K]) -> list[V | None]:
        """The values of ``keys`` in order; one store multi-get for those not known yet."""
        raw_keys = [table.key.encode(key) for key in keys]
        values = self._values.setdefault(table.name, {})
        missing = list(dict.fromkeys(raw for raw in raw_keys if raw not in values))
        if missing:
            decode = table.value.decode
            for raw_key, raw in zip(missing, self.store.get_many(table.name, missing), strict=True):
                values[raw_key] = None if raw is None else decode(raw)
        return [values[raw] for raw in raw_keys]

    def items(
        self, table: Table[K, V], prefix: bytes = b"", start: bytes = b""
    ) -> Iterator[tuple[K, V]]:
        """The table's entries in key order (under ``prefix``, from ``start``), the batch's
        own writes included and its deletions left out."""
        written = self._written.get(table.name, {})
        values = self._values.get(table.name, {})
        ours = [
            (raw_key, values[raw_key]) for raw_key in self._written_under(table.name, prefix, start)
        ]
        stored = (
            (raw_key, table.value.decode(raw))
            for raw_key, raw in self.store.items(table.name, prefix, start)
            if raw_key not in written
        )
        for raw_key, value in _merged(stored, iter(ours)):
            if value is not None:
                yield table.key.decode(raw_key), value

    # --- writes -------------------------------------------------------------------

    def set(self, table: Table[K, V], key: K, value: V) -> None:
        self._write(table, table.key.encode(key), value)

    def delete(self, table: Table[K, V], key: K) -> None:
        self._write(table, table.key.encode(key), None)

    def _write(self, table: Table[Any, Any], raw_key: bytes, value: Any) -> None:
        written = self._written.get(table.name)
        if written is None:
            self._tables[table.name] = table
            written = self._written[table.name] = {}
            self._values.setdefault(table.name, {})
        self._values[table.name][raw_key] = value
        if raw_key not in written:
            written[raw_key] = None
            in_order = self._written_sorted.get(table.name)
            if in_order is not None:
                insort(in_order, raw_key)

    def _written_under(self, name: str, prefix: bytes, start: bytes) -> list[bytes]:
        """The keys the batch wrote under ``prefix`` from ``start``, in key order."""
        in_order = self._written_sorted.get(name)
        if in_order is None:
            in_order = self._written_sorted[name] = sorted(self._written.get(name, ()))
        keys: list[bytes] = []
        for raw_key in in_order[bisect_left(in_order, max(prefix, start)) :]:
            if not raw_key.startswith(prefix):
                break
            keys.append(raw_key)
        return keys

    def writes(self) -> list[Write]:
        """Every key the batch wrote, encoded once, as the store and changelog take them."""
        writes: list[Write] = []
        for name, keys in self._written.items():
            encode = self._tables[name].value.encode
            values = self._values[name]
            prefix = store_key(name, b"")  # every key of the table starts so
            for raw_key in keys:
                value = values[raw_key]
                writes.append(Write(prefix + raw_key, None if value is None else encode(value)))
        return writes


def _merged(
    stored: Iterator[tuple[bytes, Any]], ours: Iterator[tuple[bytes, Any]]
) -> Iterator[tuple[bytes, Any]]:
    """Two key-ordered streams of disjoint keys as one, in key order."""
    mine = next(ours, None)
    for entry in stored:
        while mine is not None and mine[0] < entry[0]:
            yield mine
            mine = next(ours, None)
        yield entry
    while mine is not None:
        yield mine
        mine = next(ours, None)
