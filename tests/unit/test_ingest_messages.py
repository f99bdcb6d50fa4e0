"""Decoding ingest messages: exact values, and a reason for what cannot be stored."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from driftline.state.commands import MAX_VALUE_DEPTH, Insert, RebuildBins
from driftline.topics.messages import decode_ingest, encode_ingest, encode_rebuild_bins, ingest_key
from tests.support.values import nested

KEY = ingest_key("shop", "fraud", "e1")


def decoded(event: dict[str, Any]) -> Insert | str:
    # The standard library writes what orjson cannot (a value nested 300 deep), as a
    # producer in another language may.
    message = {"op": "insert", "project_id": "shop", "model_id": "fraud", "event_id": "e1",
               "event": event}  # fmt: skip
    value = json.dumps(message).encode()
    command = decode_ingest(KEY, value, received_ms=1, offset=0, ref=0, max_bytes=1 << 20)
    assert isinstance(command, str | Insert)
    return command


def test_integers_beyond_64_bits_are_kept_as_sent() -> None:
    command = decoded({"amount": 2**70 + 1, "debt": -(2**65)})
    assert isinstance(command, Insert)
    assert command.columns == {"amount": 2**70 + 1, "debt": -(2**65)}
    assert type(command.columns["amount"]) is int


def test_a_value_nested_too_deep_gets_a_reason_not_a_crash() -> None:
    reason = decoded({"amount": 1, "blob": nested(300)})
    assert isinstance(reason, str)
    assert "'blob'" in reason
    assert f"nested more than {MAX_VALUE_DEPTH} levels" in reason


def test_a_value_nested_to_the_limit_is_kept() -> None:
    command = decoded({"blob": nested(MAX_VALUE_DEPTH), "map": {"a": {"b": [1, {"c": 2}]}}})
    assert isinstance(command, Insert)
    assert command.columns["blob"] == nested(MAX_VALUE_DEPTH)


@pytest.mark.parametrize("size", [300, 100_000])
def test_a_reason_quotes_a_long_value_short(size: int) -> None:
    value = b'{"op": "insert", "project_id": "shop", "model_id": "fraud", "event_id": "e1", '
    value += b'"event": [' + b"1," * size + b"1]}"
    reason = decode_ingest(KEY, value, received_ms=1, offset=0, ref=0, max_bytes=1 << 20)
    assert isinstance(reason, str)
    assert reason.startswith("insert needs 'event'")
    assert len(reason) < 400


def test_the_client_encodes_integers_beyond_64_bits() -> None:
    value = encode_ingest("insert", "shop", "fraud", "e1", {"amount": 2**70})
    assert b"1180591620717411303424" in value


def test_a_rebuild_request_is_keyed_by_its_model() -> None:
    value = encode_rebuild_bins("shop", "fraud")
    decoded = decode_ingest(b"shop/fraud", value, received_ms=1, offset=7, ref=2, max_bytes=1000)
    assert decoded == RebuildBins("shop/fraud", 7, 2)
    elsewhere = decode_ingest(b"shop/x", value, received_ms=1, offset=7, ref=2, max_bytes=1000)
    assert elsewhere == "a rebuild_bins message must be keyed 'shop/fraud' (project_id/model_id)"
    unnamed = b'{"op": "rebuild_bins", "project_id": "shop"}'
    refused = decode_ingest(b"shop/", unnamed, received_ms=1, offset=7, ref=2, max_bytes=1000)
    assert isinstance(refused, str)
    assert "model_id" in refused


def test_a_rebuild_request_names_its_generation_or_is_refused() -> None:
    value = encode_rebuild_bins("shop", "fraud", generation=1_765_000_000_000_000)
    decoded = decode_ingest(b"shop/fraud", value, received_ms=1, offset=7, ref=2, max_bytes=1000)
    assert decoded == RebuildBins("shop/fraud", 7, 2, 1_765_000_000_000_000)
    for generation in (-1, 2**63, 1.5, "7", True, None):
        message = {"op": "rebuild_bins", "project_id": "shop", "model_id": "fraud",
                   "generation": generation}  # fmt: skip
        refused = decode_ingest(
            b"shop/fraud", orjson.dumps(message), received_ms=1, offset=7, ref=2, max_bytes=1000
        )
        assert isinstance(refused, str), generation
        assert "generation" in refused
