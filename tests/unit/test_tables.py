"""The transaction protocol every processor reads and writes its tables through.

Checked against a plain dict standing for the table: whatever mix of sets, deletes,
reads and scans a batch does, the transaction answers as the dict does, its scans list
the dict's entries in key order, and once its writes are applied the store holds it.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.state.store import Checkpoint, PartitionStore
from driftline.state.tables import TEXT, Codec, PartitionTransaction, Table

NUMBERS = Table("numbers", TEXT, Codec(orjson.dumps, orjson.loads))
OTHER = Table("other", TEXT, TEXT)

keys = st.sampled_from(["a", "ab", "abc", "b", "ba", "c"])
operations = st.lists(
    st.tuples(st.sampled_from(["set", "delete", "get", "scan"]), keys, st.integers(0, 9)),
    max_size=30,
)


def _scan(store: PartitionStore, prefix: str) -> dict[str, int]:
    return dict(PartitionTransaction(store).items(NUMBERS, prefix.encode()))


@given(
    before=st.dictionaries(keys, st.integers(0, 9)),
    batch=operations,
    prefix=st.sampled_from(["", "a", "ab", "b"]),
)
def test_a_transaction_reads_its_own_writes_and_commits_them(
    tmp_path_factory: pytest.TempPathFactory,
    before: dict[str, int],
    batch: list[tuple[str, str, int]],
    prefix: str,
) -> None:
    store = PartitionStore(tmp_path_factory.mktemp("tables"))
    setup = PartitionTransaction(store)
    for key, value in before.items():
        setup.set(NUMBERS, key, value)
    setup.set(OTHER, "a", "elsewhere")
    store.write(setup.writes(), Checkpoint(1, 1))

    expected = dict(before)
    tx = PartitionTransaction(store)
    for operation, key, value in batch:
        if operation == "set":
            tx.set(NUMBERS, key, value)
            expected[key] = value
        elif operation == "delete":
            tx.delete(NUMBERS, key)
            expected.pop(key, None)
        elif operation == "get":
            assert tx.get(NUMBERS, key) == expected.get(key)
        else:  # a scan between writes: under the key's first letter, from the key on
            under, start = key[:1], key if value % 2 else ""
            assert list(tx.items(NUMBERS, under.encode(), start.encode())) == [
                (k, v) for k, v in sorted(expected.items()) if k.startswith(under) and k >= start
            ]
    everything = sorted(expected)
    assert tx.get_many(NUMBERS, everything) == [expected[key] for key in everything]
    in_scope = {k: v for k, v in sorted(expected.items()) if k.startswith(prefix)}
    assert list(tx.items(NUMBERS, prefix.encode())) == list(in_scope.items())

    store.write(tx.writes(), Checkpoint(2, 2))
    assert _scan(store, "") == expected
    assert PartitionTransaction(store).get(OTHER, "a") == "elsewhere"
    store.close()


def test_a_key_written_many_times_is_one_write(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path)
    tx = PartitionTransaction(store)
    for value in range(5):
        tx.set(NUMBERS, "a", value)
    tx.delete(NUMBERS, "b")
    writes = tx.writes()
    assert [(w.key, w.value) for w in writes] == [(b"numbers\x00a", b"4"), (b"numbers\x00b", None)]
    store.close()


def test_nothing_reaches_the_store_before_the_writes_are_applied(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path)
    tx = PartitionTransaction(store)
    tx.set(NUMBERS, "a", 1)
    assert PartitionTransaction(store).get(NUMBERS, "a") is None
    store.close()
