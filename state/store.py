"""Where the state of one partition lives: one RocksDB, written in atomic batches.

A partition's tables (events, parked updates, later the metric partials) share one
database, so a batch's writes to all of them land together with the checkpoint that says
which input and changelog offsets they reflect. That single atomic write is what keeps
the tables consistent with each other and with their input position across crashes.

This module knows nothing of Kafka: offsets are plain integers to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import orjson
from rocksdict import (
    BlockBasedOptions,
    Cache,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
)

_SEPARATOR = b"\x00"
_CHECKPOINT_KEY = b"\x00checkpoint"

# What a store's memory is made of (RocksDB properties): memtables, the index and filter
# blocks held outside the block cache, and the block cache (shared or the store's own).
MEMORY = ("size-all-mem-tables", "estimate-table-readers-mem", "block-cache-usage")


@dataclass(frozen=True, slots=True)
class Write:
    """One table write; ``value`` None deletes the key. ``key`` is ``store_key(table, key)``."""

    key: bytes
    value: bytes | None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a partition's state stands: the input it has consumed, and how many batches
    (with their ticks) it has committed. The same pair is written to the changelog and
    with the committed input offset, so a store can tell whether it is current."""

    # Next input offset to process; -1 when nothing was processed yet.
    next_input_offset: int = -1
    # Batches committed so far; grows by one with every committed batch or tick.
    sequence: int = 0

    def following(self, next_input_offset: int) -> Checkpoint:
        """The checkpoint of the next committed batch."""
        return Checkpoint(next_input_offset, self.sequence + 1)

    def to_bytes(self) -> bytes:
        return orjson.dumps([self.next_input_offset, self.sequence])

    @classmethod
    def from_bytes(cls, raw: bytes) -> Checkpoint:
        next_input, sequence = orjson.loads(raw)
        return cls(next_input, sequence)


def store_key(table: str, key: bytes) -> bytes:
    return table.encode() + _SEPARATOR + key


def split_store_key(raw: bytes) -> tuple[str, bytes]:
    table, _, key = raw.partition(_SEPARATOR)
    return table.decode(), key


MIB = 1024 * 1024


class StoreResources:
    """The memory budget every ``PartitionStore`` of a process shares.

    With RocksDB's defaults each store had memtables of up to 2 x 64 MiB and a cache of
    its own, and a worker holds a dozen stores: memtables grew with the events stored
    (458 MiB at 1M events, none yet full enough to flush) and the worker's RSS with them.
    Here one write-buffer manager bounds the memtables of all stores together, and charges
    them to the one block cache, so memtables plus cached blocks stay within
    ``block_cache_bytes``. Index and filter blocks live in that cache too: held by the
    table readers instead, they grew by ~8 MiB per 3M stored events, without bound.
    """

    def __init__(
        self, write_buffer_bytes: int = 64 * MIB, block_cache_bytes: int = 128 * MIB
    ) -> None:
        self.write_buffer_bytes = write_buffer_bytes
        self.block_cache_bytes = block_cache_bytes
        self.cache = Cache(block_cache_bytes)
        self.write_buffers = WriteBufferManager.new_write_buffer_manager_with_cache(
            write_buffer_bytes, False, self.cache
        )

    def options(self) -> Options:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_manager(self.write_buffers)
        # A store's own memtable flushes at a quarter of the shared budget at the latest,
        # so one busy partition cannot hold all of it.
        options.set_write_buffer_size(max(MIB, self.write_buffer_bytes // 4))
        options.set_max_write_buffer_number(2)
        table = BlockBasedOptions()
        table.set_block_cache(self.cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        # Point lookups of absent keys (every insert looks for its event) skip the files:
        # 200k of them in a store of 1.5M events took 0.14 s instead of 0.19 s.
        table.set_bloom_filter(10, False)
        options.set_block_based_table_factory(table)
        return options


@cache
def default_resources() -> StoreResources:
    """The budget of stores opened without one (tools, tests): one per process as well."""
    return StoreResources()


class PartitionStore:
    def __init__(self, path: Path, resources: StoreResources | None = None) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.resources = default_resources() if resources is None else resources
        self._db = Rdict(str(path), self.resources.options())
        # Stores reporting the same block cache (shared) have the same id.
        self.cache_id = id(self.resources.cache)

    def get(self, table: str, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(store_key(table, key))
        return value

    def get_many(self, table: str, keys: list[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = self._db.get([store_key(table, key) for key in keys])
        return values

    def items(
        self, table: str, prefix: bytes = b"", start: bytes = b""
    ) -> Iterator[tuple[bytes, bytes]]:
        """The table's (key, value) pairs in key order, optionally those under ``prefix``,
        from the first key at or after ``start``."""
        table_prefix = table.encode() + _SEPARATOR
        scope = table_prefix + prefix
        for raw_key, value in self._db.items(from_key=max(scope, table_prefix + start)):
            if not raw_key.startswith(scope):
                return
            yield raw_key[len(table_prefix) :], value

    def checkpoint(self) -> Checkpoint:
        raw = self._db.get(_CHECKPOINT_KEY)
        return Checkpoint() if raw is None else Checkpoint.from_bytes(raw)

    def write(self, writes: Iterable[Write], checkpoint: Checkpoint) -> None:
        """Apply the writes and move the checkpoint, all or nothing."""
        batch = WriteBatch(raw_mode=True)
        for write in writes:
            if write.value is None:
                batch.delete(write.key)
            else:
                batch.put(write.key, write.value)
        batch.put(_CHECKPOINT_KEY, checkpoint.to_bytes())
        self._db.write(batch)

    def write_raw(
        self, pairs: Iterable[tuple[bytes, bytes | None]], checkpoint: Checkpoint
    ) -> None:
        """Apply changelog records (already store keys) during a restore."""
        batch = WriteBatch(raw_mode=True)
        for key, value in pairs:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(_CHECKPOINT_KEY, checkpoint.to_bytes())
        self._db.write(batch)

    def memory(self) -> dict[str, int]:
        """RocksDB's own account of the memory it holds, by the property names above."""
        return {name: self._db.property_int_value(f"rocksdb.{name}") or 0 for name in MEMORY}

    def close(self) -> None:
        self._db.close()
