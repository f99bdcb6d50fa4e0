"""The projection engine's pure helpers (``agents/projection.py``), its isolation of a
refused record over a sink that refuses it, and the PostgreSQL sink's statements and
coalescing (``agents/postgres_projection.py``), without a broker or a server."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from confluent_kafka import Message

from driftline.agents.postgres_projection import (
    AlertRows,
    BinRows,
    bin_key_of,
    coalesced,
    column_arrays,
    delete_by_key,
    unnest,
    upsert,
)
from driftline.agents.projection import (
    Projection,
    RefusedError,
    halves,
    partition_ends,
)
from driftline.topics.dead_letters import reason_kind
from driftline.topics.metric_bins import emitted_at_ms


def message(
    partition: int, offset: int, key: bytes | None = b"k", value: bytes | None = b"v"
) -> Message:
    return Message(topic="t", partition=partition, offset=offset, key=key, value=value)


def test_partition_ends_are_each_partitions_next_offset() -> None:
    batch = [message(0, 5), message(1, 9), message(0, 6)]
    assert partition_ends(batch) == {0: 7, 1: 10}


def test_halves_keep_the_order() -> None:
    batch = [message(0, n) for n in range(5)]
    first, second = halves(batch)
    assert [m.offset() for m in first] == [0, 1]
    assert [m.offset() for m in second] == [2, 3, 4]


def test_coalescing_keeps_the_last_value_of_a_key_tombstones_included() -> None:
    batch = [message(0, 0, b"a", b"1"), message(0, 1, b"b", b"2"), message(0, 2, b"a", None),
             message(0, 3, None, b"keyless"), message(0, 4, b"b", b"3")]  # fmt: skip
    assert coalesced(batch) == {b"a": None, b"b": b"3"}


def test_a_metrics_key_names_its_bins_primary_key() -> None:
    assert bin_key_of(b"shop/churn/490000") == (
        "shop", "churn", datetime(2025, 11, 24, 16, tzinfo=UTC)
    )  # fmt: skip
    assert bin_key_of(b"not-a-bin") is None
    assert bin_key_of(b"shop/churn/soon") is None


def test_statements_take_one_typed_array_per_column() -> None:
    columns = {"a": "text NOT NULL", "b": "bigint", "c": "double precision NOT NULL"}
    assert unnest(columns) == "unnest(%b::text[], %b::bigint[], %b::double precision[])"
    assert upsert("s", "t", columns, ["a"]) == (
        'INSERT INTO "s".t (a, b, c) SELECT * FROM unnest(%b::text[], %b::bigint[], '
        "%b::double precision[]) ON CONFLICT (a) DO UPDATE SET b = EXCLUDED.b, c = EXCLUDED.c"
    )
    assert delete_by_key("s", "t", {"a": "text", "b": "bigint"}) == (
        'DELETE FROM "s".t t USING unnest(%b::text[], %b::bigint[]) AS k(a, b) '
        "WHERE t.a = k.a AND t.b = k.b"
    )
    assert column_arrays([("x", 1), ("y", 2)], 2) == [["x", "y"], [1, 2]]
    assert column_arrays([], 3) == [[], [], []]


def test_the_emission_time_is_read_from_a_documents_top_level() -> None:
    raw = b'{"project_id":"p","version":3,"emitted_at_ms":1764000000123,"counts":{"n":1}}'
    assert emitted_at_ms(raw) == 1_764_000_000_123
    assert emitted_at_ms(b'{"version":3}') is None


class RefusingSink:
    """Holds its markers in memory; refuses any batch holding a value ``bad``."""

    dependency = "test store"
    outage_errors: tuple[type[BaseException], ...] = (ConnectionError,)

    def __init__(self) -> None:
        self.rows: dict[bytes, bytes | None] = {}
        self.marks: dict[int, int] = {}

    def markers(self, partitions: Sequence[int]) -> dict[int, int | None]:
        return {p: self.marks.get(p) for p in partitions}

    def set_marker(self, partition: int, offset: int) -> None:
        self.marks[partition] = offset

    def write(self, messages: Sequence[Message], ends: Mapping[int, int]) -> dict[int, int | None]:
        if any(m.value() == b"bad" for m in messages):
            raise RefusedError("a bad value")
        before = self.markers(list(ends))
        self.rows.update(coalesced(messages))
        self.marks.update(ends)
        return before


def test_a_refused_record_is_isolated_dead_lettered_and_passed_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = RefusingSink()
    projection = Projection("test", "127.0.0.1:1", "t", "g", sink, 6000)
    letters: list[tuple[int, str]] = []

    def dead_letter(self: Any, refused: Message, refusal: RefusedError) -> None:
        letters.append((refused.offset(), str(refusal)))

    monkeypatch.setattr(Projection, "_dead_letter", dead_letter)
    # Partition 0 resumed from the start: the engine's state after ``_resume_from``.
    sink.set_marker(0, 0)
    projection._written = {0: 0}
    batch = [message(0, n, f"k{n % 3}".encode(), b"bad" if n == 4 else b"%d" % n)
             for n in range(8)]  # fmt: skip
    try:
        projection._write_isolating(batch)
    finally:
        projection._consumer.close()
    assert letters == [(4, "a bad value")]
    assert sink.rows == {b"k0": b"6", b"k1": b"7", b"k2": b"5"}  # the last good value of each
    assert sink.marks == {0: 8}
    assert projection._written == {0: 8}


def test_a_tombstone_key_beyond_any_date_is_no_bin() -> None:
    assert bin_key_of(b"shop/churn/99999999999999") is None


@pytest.mark.parametrize(
    "value",
    [b"[]", b'{"project_id": "p"}', b'{"key": "k", "changes": []}', b"\xff"],
)
def test_records_that_are_no_document_are_refused_not_raised(value: bytes) -> None:
    for rows in (BinRows(), AlertRows()):
        with pytest.raises(RefusedError) as refused:
            rows.write(cast("Any", None), "s", {b"shop/churn/1": value})
        assert reason_kind(str(refused.value)) == "undecodable"
