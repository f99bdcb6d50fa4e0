"""Integers of any size travel exactly; what orjson refuses is refused on every path."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.state import exact_json

documents = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**200), 2**200),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=5),
    ),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=10,
)


@given(documents)
def test_plain_json_round_trips_exactly(value: Any) -> None:
    assert exact_json.loads(exact_json.dumps(value)) == value


@given(documents)
def test_tagged_records_round_trip_exactly(value: Any) -> None:
    assert exact_json.loads_tagged(exact_json.dumps_tagged(value)) == value


@given(documents)
def test_plain_output_is_json_any_reader_takes(value: Any) -> None:
    assert json.loads(exact_json.dumps(value)) == value


def test_an_integer_beyond_64_bits_is_read_as_the_same_integer() -> None:
    raw = b'{"big": 18446744073709551617, "neg": -9223372036854775809}'
    assert orjson.loads(raw)["big"] != 2**64 + 1  # what orjson alone does
    assert exact_json.loads(raw) == {"big": 2**64 + 1, "neg": -(2**63) - 1}


@pytest.mark.parametrize(
    "raw",
    [
        b"NaN",
        b"[Infinity]",
        b"[1e400]",
        b"[1e400, 12345678901234567890]",
        b'["\\ud800", 12345678901234567890]',
        b"[" * 2000 + b"1" + b"]" * 2000,
        b'{"a": 12345678901234567890',
        b"\xff",
    ],
)
def test_what_orjson_refuses_is_refused_on_the_exact_path_too(raw: bytes) -> None:
    with pytest.raises(exact_json.JSONError):
        exact_json.loads(raw)
