"""One request rule everywhere (issue 9): event ids with '/', dropped columns and publish
statuses, cursors bound to their query, unknown query parameters, Content-Type, plain
words in errors, the model found for rate-limit headers, deeply nested values."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from driftline.api.requests import (
    Cursor,
    MetricsQuery,
    RequestError,
    check_row,
    content_type_problem,
    model_named_anywhere,
    parse_delete,
    parse_metrics,
    parse_publish,
    parse_slice,
    publish_answer,
    publish_messages,
    query_parameters_of,
    query_values,
    takes_query,
)
from driftline.state.commands import MAX_VALUE_DEPTH, Insert
from driftline.state.events import dropped_insert_fields
from driftline.state.periods import Period
from driftline.state.spec import ModelSpec
from driftline.state.tabular import InvalidEventError, outgoing_event
from driftline.state.wording import shown
from driftline.topics.messages import decode_ingest, encode_ingest, ingest_key
from tests.support.values import nested

SPEC = ModelSpec.from_dict(
    {"project_id": "shop", "model_id": "fraud", "inputs": ["age"], "outputs": ["score"],
     "targets": ["is_fraud"], "metadata": ["channel"]}
)  # fmt: skip
MODEL = [("project_id", "shop"), ("model_id", "fraud")]


def refused(call: Any, *args: Any, status: int = 400) -> str:
    with pytest.raises(RequestError) as caught:
        call(*args)
    assert caught.value.status == status
    return caught.value.message


# --- 1. '/' in event ids ------------------------------------------------------------------


@pytest.mark.parametrize("event_id", ["a/b", "/", "a//b/", "shop/fraud/x"])
def test_an_event_id_may_hold_slashes_on_every_path(event_id: str) -> None:
    inserted = check_row(SPEC, {"event_id": event_id, "event": {"age": 1}}, 0, update=False)
    updated = check_row(SPEC, {"event_id": event_id, "event": {"is_fraud": 1}}, 0, update=True)
    assert inserted.event_id == updated.event_id == event_id
    # The client's rule is the same function.
    assert outgoing_event(SPEC, {"event_id": event_id}, update=True).event_id == event_id
    # The worker reads the message back to the same event (the key splits at its first
    # two '/').
    key = ingest_key("shop", "fraud", event_id)
    value = encode_ingest("insert", "shop", "fraud", event_id, {"age": 1})
    command = decode_ingest(key, value, received_ms=0, offset=0, ref=0, max_bytes=1 << 20)
    assert isinstance(command, Insert)
    assert (command.model_key, command.event_id) == ("shop/fraud", event_id)
    # Slices and deletes take it as well.
    assert parse_slice([*MODEL, ("event_id", event_id)]).event_ids == (event_id,)
    deletion = parse_delete({"project_id": "shop", "model_id": "fraud", "event_ids": [event_id]})
    assert deletion.event_ids == (event_id,)


def test_an_empty_event_id_is_still_refused() -> None:
    with pytest.raises(InvalidEventError, match="non-empty"):
        check_row(SPEC, {"event_id": "", "event": {}}, 0, update=False)


# --- 2. dropped columns and publish statuses ----------------------------------------------


def test_an_insert_reports_the_columns_the_spec_does_not_list() -> None:
    rows = [{"event_id": "a", "event": {"age": 1, "colour": "red"}},
            {"event_id": "b", "event": {"age": 2, "colour": "blue", "size": 3}},
            {"event_id": "c", "event": {"age": 2, "is_fraud": 1}}]  # fmt: skip
    _, ids, errors, dropped = publish_messages(SPEC, rows, update=False, max_bytes=1 << 20)
    assert (ids, errors) == (["a", "b", "c"], [])
    assert dropped == Counter({"colour": 2, "size": 1})
    assert dropped_insert_fields(SPEC, {"age": 1, "colour": 2}) == ["colour"]


def test_an_update_reports_read_only_and_unknown_columns() -> None:
    rows = [{"event_id": "a", "event": {"is_fraud": 1, "age": 3, "colour": "red"}}]
    _, _, _, dropped = publish_messages(SPEC, rows, update=True, max_bytes=1 << 20)
    assert dropped == Counter({"age": 1, "colour": 1})


def test_the_status_says_whether_all_some_or_no_rows_were_accepted() -> None:
    error = {"index": 1, "error": "events[1] must be an object"}
    body, status = publish_answer(["a"], [], Counter({"colour": 2}))
    assert status == 200
    assert body == {"accepted": 1, "errors": [], "event_ids": ["a"],
                    "dropped_fields": {"colour": 2}}  # fmt: skip
    assert publish_answer(["a"], [error], Counter())[1] == 207
    body, status = publish_answer([], [error, error], Counter())
    assert status == 400
    assert "nothing was published: all 2 rows were refused" in body["error"]
    assert body["errors"] == [error, error]
    assert body["accepted"] == 0


# --- 3. cursors are bound to their query --------------------------------------------------


def first_page(*items: tuple[str, str]) -> list[tuple[str, str]]:
    return [*MODEL, ("start_time", "0"), ("end_time", "3600000"), *items]


def test_a_cursor_goes_on_with_its_own_query_even_with_another_limit_or_format() -> None:
    query = parse_slice(first_page())
    cursor = query.cursor_at(2, "00ff").encode()
    again = parse_slice(first_page(("limit", "5"), ("format", "csv"), ("cursor", cursor)))
    assert (again.cursor.partition, again.cursor.after, again.limit) == (2, "00ff", 5)
    # The same instants written another way are the same query.
    iso = [*MODEL, ("start_time", "1970-01-01T00:00:00Z"),
           ("end_time", "1970-01-01T01:00:00+00:00"), ("cursor", cursor)]  # fmt: skip
    assert parse_slice(iso).cursor.partition == 2


@pytest.mark.parametrize(
    "changed",
    [
        [("project_id", "bank"), ("model_id", "fraud"), ("start_time", "0"),
         ("end_time", "3600000")],
        [*MODEL, ("start_time", "0"), ("end_time", "7200000")],
        [*MODEL, ("start_time", "0"), ("end_time", "3600000"), ("event_id", "a")],
        [("project_id", "shop"), ("model_id", "churn"), ("start_time", "0"),
         ("end_time", "3600000")],
    ],
)  # fmt: skip
def test_a_cursor_reused_with_another_model_range_or_ids_is_refused(
    changed: list[tuple[str, str]],
) -> None:
    cursor = parse_slice(first_page()).cursor_at(1).encode()
    message = refused(parse_slice, [*changed, ("cursor", cursor)])
    assert "'cursor' belongs to another query" in message
    assert "only limit and format may change" in message


def test_a_cursor_of_ids_is_bound_to_the_ids_and_their_order() -> None:
    ids = [*MODEL, ("event_id", "a"), ("event_id", "b")]
    cursor = parse_slice(ids).cursor_at(offset=1).encode()
    assert parse_slice([*ids, ("cursor", cursor)]).cursor.offset == 1
    swapped = [*MODEL, ("event_id", "b"), ("event_id", "a"), ("cursor", cursor)]
    assert "belongs to another query" in refused(parse_slice, swapped)


def test_a_cursor_without_a_query_is_not_one_the_api_gave() -> None:
    unbound = Cursor(1, "", 0).encode()
    message = refused(parse_slice, first_page(("cursor", unbound)))
    assert "not one this API gave" in message


# --- 4. unknown query parameters ----------------------------------------------------------


def test_one_rule_for_query_parameters() -> None:
    single, repeated = query_values(
        [("a", "1"), ("r", "x"), ("r", "y")], {"a", "r"}, repeatable={"r"}
    )
    assert (single, repeated) == ({"a": "1"}, {"r": ["x", "y"]})
    message = refused(query_values, [("a", "1"), ("strat", "2"), ("zz", "")], {"a"})
    assert "unknown query parameter(s) 'strat', 'zz'; the query parameters are a" in message
    assert "'a' is given twice" in refused(query_values, [("a", "1"), ("a", "2")], {"a"})
    assert "'x'" in refused(query_values, [("x", "1")], ())


def test_a_handler_declares_its_query_parameters_and_takes_none_otherwise() -> None:
    @takes_query("limit", "cursor", repeatable={"id"})
    async def declared() -> None: ...

    async def undeclared() -> None: ...

    assert query_parameters_of(declared) == (frozenset({"limit", "cursor"}), frozenset({"id"}))
    assert query_parameters_of(undeclared) == (frozenset(), frozenset())


def test_metrics_refuse_unknown_query_parameters() -> None:
    items = [*MODEL, ("start", "0"), ("end", "1")]
    assert parse_metrics(items) == MetricsQuery("shop", "fraud", 0, 1, Period.HOUR)
    message = refused(parse_metrics, [*items, ("strat", "5")])
    assert "unknown query parameter(s) 'strat'" in message
    assert "'end' is given twice" in refused(parse_metrics, [*items, ("end", "2")])


# --- 5. Content-Type ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [None, "application/json", "Application/JSON", "application/json; charset=utf-8",
     "application/json;charset=UTF-8", 'application/json; charset="utf-8"'],
)  # fmt: skip
def test_json_and_no_content_type_are_taken(header: str | None) -> None:
    assert content_type_problem(header) is None


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("application/x-www-form-urlencoded", "send 'Content-Type: application/json'"),
        ("text/plain", 'got "text/plain"'),
        ("multipart/form-data; boundary=x", "takes a JSON body"),
        ("", "takes a JSON body"),
        ("application/json; charset=latin-1", 'charset "latin-1"'),
    ],
)
def test_another_content_type_is_refused_with_what_to_send(header: str, problem: str) -> None:
    message = content_type_problem(header)
    assert message is not None
    assert problem in message


# --- 6. plain words -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        ("it's", '"it\'s"'),
        (b"raw\xff", '"raw\ufffd"'),
        (bytearray(b"ab"), '"ab"'),
        ({"a": [1, None]}, '{"a":[1,null]}'),
        (2**70, str(2**70)),
        (nested(300), "[" * 77 + "..."),
        (nested(5000), "a list nested too deeply to show"),
        (object(), "a value of type object"),
    ],
)
def test_values_are_shown_as_json(value: object, text: str) -> None:
    assert shown(value) == text


def test_long_values_are_cut_short() -> None:
    assert shown("x" * 500) == '"' + "x" * 76 + "..."
    assert len(shown(list(range(1000)))) == 80


PYTHON_WORDS = ("None", "b'", "bytearray", "True", "False", "{'", "['", "'null'")


@pytest.mark.parametrize(
    "raw",
    [
        {"project_id": None, "model_id": "fraud", "event_ids": ["a"]},
        {"project_id": "shop", "model_id": "fraud", "event_ids": ["a"], "update_metrics": None},
        {"project_id": "shop", "model_id": "fraud", "event_ids": ["a", None]},
        {"project_id": "shop", "model_id": "fraud", "event_ids": ["a"], "environment": None},
        {"project_id": "shop", "model_id": "fraud", "time_range": {"start_time": None}},
        {"project_id": "shop", "model_id": "fraud", "time_range": [True]},
        {"project_id": "shop", "model_id": "fraud", "event_ids": [["x"]]},
        {"project_id": "shop", "model_id": "fraud", "event_ids": nested(900)},
    ],
)
def test_delete_errors_are_in_plain_words(raw: dict[str, Any]) -> None:
    message = refused(parse_delete, raw)
    assert not any(word in message for word in PYTHON_WORDS), message


@pytest.mark.parametrize(
    "row",
    [
        None,
        {"event": None},
        {"event": {}, "event_timestamp": None, "event_id": False},
        {"event": {}, "event_timestamp": False},
        {"event": {}, "event_timestamp": {"a": None}},
        {"event": {}, "event_id": [None]},
    ],
)
def test_row_errors_are_in_plain_words(row: object) -> None:
    with pytest.raises(InvalidEventError) as caught:
        check_row(SPEC, row, 0, update=False)
    message = str(caught.value)
    assert not any(word in message for word in PYTHON_WORDS), message


def test_slice_and_publish_errors_are_in_plain_words() -> None:
    message = refused(parse_publish, {"project_id": "shop", "model_id": "fraud", "events": None})
    assert "got null" in message
    assert 'got "xml"' in refused(parse_slice, [*MODEL, ("event_id", "a"), ("format", "xml")])
    message = refused(parse_slice, [("project_id", "shop")])
    assert message == "'model_id' must be a non-empty string without '/'; it is missing"


# --- 7. the model a request names, found leniently ----------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"project_id": "shop", "model_id": "fraud", "event_ids": ["a"]}',
        b'{"project_id": "shop", "model_id": "fraud", "event_ids": ["a"',  # cut short
        b"{'project_id': 'shop', 'model_id': 'fraud'}",  # not JSON, but it names them
        b'{"event_ids": [1], "model_id" : "fraud",\n "project_id":"shop"}',
        b"project_id=shop&model_id=fraud&event_ids=a",  # a form
    ],
)
def test_the_model_is_found_in_any_body_that_names_it(raw: bytes) -> None:
    assert model_named_anywhere(raw, {}) == ("shop", "fraud")


def test_the_model_is_found_in_the_query_when_the_body_has_none() -> None:
    assert model_named_anywhere(b"", {"project_id": "shop", "model_id": "fraud"}) == (
        "shop",
        "fraud",
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b'{"project_id": "shop"}',
        b"\xff\xfe",
        b'{"project_id": "shop", "model_id": "a/b"}',  # JSON naming no valid model
        b'{"my_project_id": "shop", "the_model_id": "fraud"',  # other names
    ],
)
def test_no_model_when_nothing_names_one(raw: bytes) -> None:
    assert model_named_anywhere(raw, {}) is None


# --- 8. deeply nested values --------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_VALUE_DEPTH + 1, 300, 1000])
def test_a_deeply_nested_value_is_that_rows_error(depth: int) -> None:
    rows = [{"event_id": "deep", "event": {"age": 1, "channel": nested(depth)}},
            {"event_id": "ok", "event": {"age": 2}}]  # fmt: skip
    messages, ids, errors, _ = publish_messages(SPEC, rows, update=False, max_bytes=1 << 20)
    assert ids == ["ok"]
    assert len(messages) == 1
    assert errors == [{"index": 0, "error": "events[0]: column 'channel' holds a value nested "
                       f"more than {MAX_VALUE_DEPTH} levels deep; flatten it or send it as a "
                       "string"}]  # fmt: skip


def test_a_value_as_deep_as_the_worker_takes_is_published() -> None:
    rows = [{"event_id": "ok", "event": {"channel": nested(MAX_VALUE_DEPTH - 1)}}]
    messages, ids, errors, _ = publish_messages(SPEC, rows, update=False, max_bytes=1 << 20)
    assert (ids, errors) == (["ok"], [])
    assert orjson.loads(messages[0][1])["event_id"] == "ok"
