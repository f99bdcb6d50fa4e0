"""The stores of a process share one memory budget: memtables beyond it go to disk."""

from pathlib import Path

from driftline.state.store import (
    MIB,
    Checkpoint,
    PartitionStore,
    StoreResources,
    Write,
    default_resources,
    store_key,
)


def _fill(store: PartitionStore, megabytes: int, tag: bytes) -> None:
    value = b"x" * 1000
    for batch in range(megabytes):
        writes = [Write(store_key("t", tag + b"%d-%d" % (batch, i)), value) for i in range(1024)]
        store.write(writes, Checkpoint(batch, batch))


def test_stores_with_one_budget_keep_their_memtables_within_it(tmp_path: Path) -> None:
    resources = StoreResources(write_buffer_bytes=4 * MIB, block_cache_bytes=16 * MIB)
    stores = [PartitionStore(tmp_path / str(p), resources) for p in range(3)]
    try:
        for p, store in enumerate(stores):
            _fill(store, 12, b"%d" % p)
        memtables = sum(store.memory()["size-all-mem-tables"] for store in stores)
        # 36 MiB written, RocksDB's default would hold all of it (64 MiB per memtable).
        assert memtables <= 8 * MIB
        assert any(path.suffix == ".sst" for path in (tmp_path / "0").iterdir())
        # The memtables are charged to the one cache that every store reports: each store
        # reports at least all of the stores' memtables. (Read one after the other, the
        # figures may differ: a background flush only lowers them, and the budget is read
        # last.)
        usages = [store.memory()["block-cache-usage"] for store in stores]
        assert min(usages) >= resources.write_buffers.get_usage() > 0
        assert len({store.cache_id for store in stores}) == 1
        assert stores[2].get("t", b"211-5") == b"x" * 1000
    finally:
        for store in stores:
            store.close()


def test_stores_opened_without_a_budget_share_the_default_one(tmp_path: Path) -> None:
    first, second = PartitionStore(tmp_path / "a"), PartitionStore(tmp_path / "b")
    try:
        assert first.resources is second.resources is default_resources()
    finally:
        first.close()
        second.close()
