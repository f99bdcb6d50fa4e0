"""The bins stage's records, as ``topics/SCHEMAS.md`` describes them and earlier versions
wrote them: bin keys, bin-partials deltas and snapshots, stored shares and deltas, and
metrics values."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.state import exact_json
from driftline.state.bin_totals import (
    DELTA_FORMAT,
    DONE_FORMAT,
    RECORD_FORMATS,
    STAGED_FORMAT,
    Share,
)
from driftline.state.bins import BIN_KEY, Counters
from driftline.state.partition_tables import DELTAS, HELD_BINS, SHARES
from driftline.topics.bin_partials import BIN_PARTIAL, BinPartial
from driftline.topics.metric_bins import METRICS_VALUE, metrics_value

# Any names, counts beyond 64 bits (they take the exact-JSON path).
counters = st.dictionaries(st.text(max_size=6), st.integers(-(2**80), 2**80).filter(bool))


def test_a_bin_key_is_model_slash_hour() -> None:
    assert BIN_KEY.encode(("shop/churn", 490_001)) == b"shop/churn/490001"
    assert BIN_KEY.decode(b"shop/churn/490001") == ("shop/churn", 490_001)


def test_a_bin_partial_snapshot_keeps_its_wire_bytes() -> None:
    snapshot = BinPartial(3, Share(1200, {"n": 2, "labelled": 1}))
    raw = b'\x013 1200\n{"n":2,"labelled":1}'
    assert BIN_PARTIAL.encode(snapshot) == raw
    assert BIN_PARTIAL.decode(raw) == snapshot
    empty = BinPartial(0, Share(7, {}))
    assert BIN_PARTIAL.encode(empty) == b"\x010 7\nnull"
    assert BIN_PARTIAL.decode(b"\x010 7\nnull") == empty


def test_a_bin_partial_delta_keeps_its_wire_bytes() -> None:
    delta = BinPartial(3, Share(1200, {"n": 1, "labelled": -1}), DELTA_FORMAT)
    raw = b'\x023 1200\n{"n":1,"labelled":-1}'
    assert BIN_PARTIAL.encode(delta) == raw
    assert BIN_PARTIAL.decode(raw) == delta


def test_a_rebuilds_records_keep_their_wire_bytes() -> None:
    staged = BinPartial(3, Share(1200, {"n": 2}), STAGED_FORMAT, generation=77)
    assert BIN_PARTIAL.encode(staged) == b'\x033 77 1200\n{"n":2}'
    done = BinPartial(3, Share(1200), DONE_FORMAT, generation=77, partitions=8)
    assert BIN_PARTIAL.encode(done) == b"\x043 77 8 1200\nnull"
    assert BIN_PARTIAL.decode(b"\x043 77 8 1200\nnull") == done


def test_a_snapshot_and_a_stored_share_of_the_json_format_before_still_read() -> None:
    """Snapshots on the topic and shares in a changelog written before the header format."""
    old = b'{"p":3,"v":1200,"c":{"n":2,"labelled":1}}'
    assert BIN_PARTIAL.decode(old) == BinPartial(3, Share(1200, {"n": 2, "labelled": 1}))
    assert BIN_PARTIAL.decode(b'{"p":0,"v":7,"c":null}') == BinPartial(0, Share(7, {}))
    assert SHARES.value.decode(b'{"v":9,"c":{"n":1}}') == Share(9, {"n": 1})


def test_a_share_read_from_the_wire_is_stored_as_it_came() -> None:
    """The bins stage stores a snapshot's counters without decoding or encoding them."""
    came = BIN_PARTIAL.decode(b'\x012 44\n{"n":3,  "h:age:1":3}').share
    assert SHARES.value.encode(came) == b'\x0144\n{"n":3,  "h:age:1":3}'
    assert came.counters == {"n": 3, "h:age:1": 3}


@given(
    st.integers(0, 20),
    st.integers(0, 2**40),
    counters,
    st.sampled_from(RECORD_FORMATS),
    st.integers(1, 2**62),
    st.integers(1, 64),
)
def test_records_and_stored_shares_survive_their_encodings_at_any_size(
    partition: int, version: int, found: Counters, kind: bytes, generation: int, partitions: int
) -> None:
    share = Share(version, found)
    generation = generation if kind in (STAGED_FORMAT, DONE_FORMAT) else 0
    partitions = partitions if kind == DONE_FORMAT else 0
    record = BinPartial(partition, share, kind, generation, partitions)
    assert BIN_PARTIAL.decode(BIN_PARTIAL.encode(record)) == record
    assert SHARES.value.decode(SHARES.value.encode(share)) == share
    assert SHARES.key.decode(SHARES.key.encode(("p/m", 12, partition))) == ("p/m", 12, partition)
    delta_key = ("p/m", 12, partition, version)
    assert DELTAS.key.decode(DELTAS.key.encode(delta_key)) == delta_key
    assert DELTAS.value.decode(DELTAS.value.encode(share)) == share


def test_a_bins_deltas_sort_under_its_shares_prefix_by_partition() -> None:
    """The emission reads a bin's deltas with one prefix scan (``shares_of``)."""
    keys = [DELTAS.key.encode(("p/m", 12, p, v)) for p, v in [(0, 5), (1, 3), (10, 2)]]
    assert all(key.startswith(b"p/m/12/") for key in keys)
    assert not DELTAS.key.encode(("p/m", 120, 0, 1)).startswith(b"p/m/12/")


def test_a_stored_share_written_with_its_partition_still_reads() -> None:
    """The bins changelog's records of earlier versions held the whole snapshot."""
    assert SHARES.value.decode(b'{"p":3,"v":9,"c":{"n":1}}') == Share(9, {"n": 1})


def test_a_metrics_value_keeps_its_wire_bytes() -> None:
    value = metrics_value(("shop/churn", 2), 40, 123, {"n": 2**70}, {"traffic": {"events": 1}})
    assert METRICS_VALUE.encode(value) == (
        b'{"project_id":"shop","model_id":"churn","hour_start_ms":7200000,'
        b'"hour_end_ms":10800000,"version":40,"emitted_at_ms":123,'
        b'"counts":{"n":1180591620717411303424},"metrics":{"traffic":{"events":1}}}'
    )
    assert METRICS_VALUE.decode(METRICS_VALUE.encode(value)) == value
    unknown_model = metrics_value(("shop/churn", 2), 40, 123, {"n": 1}, None)
    assert "metrics" not in exact_json.loads(METRICS_VALUE.encode(unknown_model))


def test_a_merge_partitions_held_bins_read_whatever_records_before_held() -> None:
    """``partials`` records held the partition's share before deltas: only the key is read."""
    assert HELD_BINS.key.decode(b"shop/churn/7") == ("shop/churn", 7)
    assert HELD_BINS.value.decode(b'{"n":2,"labelled":1}') == b'{"n":2,"labelled":1}'


def test_a_record_missing_a_number_of_its_kind_is_refused() -> None:
    """A done word read with no partition count would swap a generation in at once."""
    for raw in (b"\x043 77 1200\nnull", b"\x043 77 0 1200\nnull", b"\x033 1200\n{}",
                b"\x023 4 1200\n{}", b"\x02-3 1200\n{}"):  # fmt: skip
        with pytest.raises(ValueError, match="expected"):
            BIN_PARTIAL.decode(raw)
