"""``POST /v1/events/lookup``'s body: the slice query of ``GET /v1/events`` by the same ids,
refused with what to change."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from driftline.api.lookups import parse_lookup
from driftline.api.requests import MAX_DELETE_IDS, RequestError, parse_slice
from driftline.api.workers import batches_by_size


def lookup_body(**fields: Any) -> dict[str, Any]:
    return {"project_id": "shop", "model_id": "churn", "event_ids": ["a", "b"], **fields}


def test_a_lookup_is_the_get_slice_by_the_same_ids() -> None:
    body = lookup_body(start_time=5, end_time="1970-01-01T00:00:01Z", format="csv", limit=3)
    query = [("project_id", "shop"), ("model_id", "churn"), ("start_time", "5"),
             ("end_time", "1970-01-01T00:00:01Z"), ("format", "csv"), ("limit", "3"),
             ("event_id", "a"), ("event_id", "b")]  # fmt: skip
    assert parse_lookup(body) == parse_slice(query)
    # Integers are ids too (as in deletes), duplicates count once, nulls are absent.
    assert parse_lookup(lookup_body(event_ids=[7, "7", "a/b"], cursor=None)).event_ids == (
        "7", "a/b",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ([], "must be a JSON object"),
        ({"project_id": "shop", "model_id": "churn"}, "'event_ids' is required"),
        (lookup_body(event_ids="a"), "non-empty list"),
        (lookup_body(event_ids=[f"e{i}" for i in range(MAX_DELETE_IDS + 1)]), "at most 10,000"),
        (lookup_body(event_ids=[""]), "event_ids[0] must be a non-empty string"),
        (lookup_body(event_id=["a"]), "unknown field(s) 'event_id'"),
        (lookup_body(limit=2.5), "'limit' must be a string or an integer; got 2.5"),
        (lookup_body(start_time=True), "'start_time' must be a string or an integer"),
        (lookup_body(limit=0), "between 1 and 10,000"),
        (lookup_body(format="xml"), "json or csv"),
        (lookup_body(start_time=5), "end_time"),
    ],
)  # fmt: skip
def test_a_lookup_body_is_refused_with_what_to_change(body: Any, words: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_lookup(body)
    assert caught.value.status == 400
    assert words in caught.value.message


def test_a_lookup_goes_to_a_worker_in_batches_under_its_body_limit() -> None:
    ids = [f"{i:04d}" + "é" * (i % 300) for i in range(3_000)]
    batches = batches_by_size(ids, 64 * 1024)
    assert [i for batch in batches for i in batch] == ids
    assert len(batches) > 1
    for batch in batches:
        assert len(orjson.dumps({"model": "p/m", "event_ids": batch})) <= 64 * 1024 + 40
    assert batches_by_size(["a" * 100, "b"], 10) == [["a" * 100], ["b"]]
    assert batches_by_size([], 10) == []
