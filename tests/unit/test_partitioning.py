"""Our partitioner must agree with the Java client's, reimplemented independently in aiokafka."""

from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from driftline.topics.partitioning import murmur2, partition_for, partitions_for


@given(st.binary(max_size=64))
def test_murmur2_matches_aiokafka(data: bytes) -> None:
    assert murmur2(data) == aiokafka_murmur2(data) & 0xFFFFFFFF


def test_event_keys_spread_over_every_partition() -> None:
    keys = [f"p/m/{i}".encode() for i in range(1000)]
    counts = [0] * 8
    for key in keys:
        counts[partition_for(key, 8)] += 1
    assert min(counts) > 80


@given(st.lists(st.binary(max_size=40), max_size=50), st.integers(1, 64))
def test_the_batch_partitioner_agrees_with_the_scalar_one(keys: list[bytes], n: int) -> None:
    assert partitions_for(keys, n) == [partition_for(key, n) for key in keys]
