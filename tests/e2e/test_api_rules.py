"""One request rule everywhere, through HTTP on the real broker and Redis (issue 9): event
ids with '/', dropped columns and publish statuses, cursors bound to their query, unknown
query parameters, Content-Type, plain words, rate-limit headers of refused deletes, and
deeply nested bodies."""

from __future__ import annotations

import http.client
import re
import urllib.parse
from typing import Any

import orjson
import pytest

from driftline.api.app import create_app
from driftline.settings import Settings
from driftline.stack.api import ApiProcess
from driftline.state.bins import HOUR_MS
from driftline.topics.waiting import wait_until
from tests.support.api import (
    Answer,
    StartApi,
    call,
    client_for,
    ids_body,
    register,
    rows,
    serving_shop,
    token_for,
)
from tests.support.models import HOUR0
from tests.support.pipeline import wait_for_lag_zero

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

MODEL = {"project_id": "shop", "model_id": "churn"}
# What a Python repr looks like; no API error may contain it.
PYTHON_REPR = re.compile(r"\bNone\b|\bTrue\b|\bFalse\b|b'|bytearray|\{'|\['")


def send(api: ApiProcess, method: str, path: str, data: bytes, headers: dict[str, str]) -> Answer:
    """A request with exactly these headers (urllib would add a form Content-Type)."""
    url = urllib.parse.urlsplit(api.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


DEEP = "@deep@"


def deep_json(body: Any, depth: int) -> bytes:
    """``body`` as JSON, each ``DEEP`` in it a list nested ``depth`` deep (orjson writes
    at most 254 levels, so the test writes them itself)."""
    return orjson.dumps(body).replace(orjson.dumps(DEEP), b"[" * depth + b'"x"' + b"]" * depth)


def json_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def slice_of(api: ApiProcess, token: str, query: str) -> list[dict[str, Any]]:
    answer = call(api, "GET", f"/v1/events?project_id=shop&model_id=churn&{query}", token=token)
    assert answer.status == 200, answer.body
    rows_: list[dict[str, Any]] = answer.body["rows"]
    return rows_


# --- 1. '/' in event ids, 2. dropped columns and statuses, 8. nesting (a worker applies them) ---


def test_an_id_with_slashes_is_inserted_updated_read_and_deleted(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    api, token = serving_shop(settings, start_worker, start_api)
    inserted = call(api, "POST", "/v1/events", {**MODEL, "events": [
        {"event_id": "a/b", "event_timestamp": HOUR0, "event": {"age": 30, "plan": "pro"}},
        {"event_id": "/x//", "event_timestamp": HOUR0 + 1, "event": {"age": 31}},
    ]}, token=token)  # fmt: skip
    assert (inserted.status, inserted.body["event_ids"]) == (200, ["a/b", "/x//"])
    with client_for(api, token) as client:  # the client shares the rule
        client.publish_event("shop", "churn", {"age": 32}, event_id="c/d", event_timestamp=HOUR0)
    wait_for_lag_zero(settings)
    updated = call(api, "PATCH", "/v1/events", {**MODEL, "events": [
        {"event_id": "a/b", "event": {"churned": 1, "note": "n/1"}}]}, token=token)  # fmt: skip
    assert (updated.status, updated.body["event_ids"]) == (200, ["a/b"])
    wait_for_lag_zero(settings)

    ids = "&".join(f"event_id={urllib.parse.quote(i, safe='')}" for i in ("a/b", "/x//", "c/d"))
    found = {row["__event_id"]: row for row in slice_of(api, token, ids)}
    assert set(found) == {"a/b", "/x//", "c/d"}
    assert (found["a/b"]["churned"], found["a/b"]["note"], found["a/b"]["age"]) == (1, "n/1", 30)
    in_range = slice_of(api, token, f"start_time={HOUR0}&end_time={HOUR0 + HOUR_MS}")
    assert {row["__event_id"] for row in in_range} == {"a/b", "/x//", "c/d"}

    deletion = call(api, "POST", "/v1/events/delete", ids_body("a/b", "c/d"), token=token)
    assert deletion.status == 202, deletion.body
    wait_until(
        lambda: call(api, "GET", deletion.body["status_url"], token=token).body["status"]
        == "done",
        timeout_s=30, what="the deletion done",
    )  # fmt: skip
    assert [row["__event_id"] for row in slice_of(api, token, ids)] == ["/x//"]


def test_publish_reports_dropped_columns_and_answers_by_how_many_rows_were_refused(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    api, token = serving_shop(settings, start_worker, start_api)
    coloured = [{"event_id": f"c{i}", "event_timestamp": HOUR0,
                 "event": {"age": 20, "colour": "red", **({"size": 1} if i else {})}}
                for i in range(3)]  # fmt: skip
    inserted = call(api, "POST", "/v1/events", {**MODEL, "events": coloured}, token=token)
    assert inserted.status == 200
    assert inserted.body["dropped_fields"] == {"colour": 3, "size": 2}
    updated = call(api, "PATCH", "/v1/events", {**MODEL, "events": [
        {"event_id": "c0", "event": {"churned": 0, "colour": "blue", "age": 5}}]},
        token=token)  # fmt: skip
    assert updated.status == 200
    assert updated.body["dropped_fields"] == {"colour": 1, "age": 1}

    deep = {"event_id": "deep", "event": {"age": 1, "note": DEEP}}
    for method in ("POST", "PATCH"):
        some = send(api, method, "/v1/events",
                    deep_json({**MODEL, "events": [deep, coloured[0]]}, 300),
                    json_headers(token))  # fmt: skip
        assert some.status == 207, some.body
        assert some.body["accepted"] == 1
        assert some.body["errors"] == [{"index": 0, "error": "events[0]: column 'note' holds a "
                                        "value nested more than 64 levels deep; flatten it or "
                                        "send it as a string"}]  # fmt: skip
        refused_rows = [deep, {"event_id": "t", "event_timestamp": -1, "event": {}}, "row"]
        every = send(api, method, "/v1/events", deep_json({**MODEL, "events": refused_rows}, 300),
                     json_headers(token))  # fmt: skip
        assert every.status == 400, every.body
        assert every.body["error"].startswith("nothing was published: all 3 rows were refused")
        assert [e["index"] for e in every.body["errors"]] == [0, 1, 2]
        assert every.body["accepted"] == 0
        for error in every.body["errors"]:
            assert not PYTHON_REPR.search(error["error"]), error
    wait_for_lag_zero(settings)
    found = slice_of(api, token, "event_id=c0&event_id=c1&event_id=deep")
    assert {row["__event_id"]: row.get("colour") for row in found} == {"c0": None, "c1": None}


# --- 3. cursors -------------------------------------------------------------------------------


def test_a_cursor_is_refused_with_another_query_and_taken_with_another_limit_or_format(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    api, token = serving_shop(settings, start_worker, start_api)
    events = rows(24, 2)
    assert call(api, "POST", "/v1/events", {**MODEL, "events": events}, token=token).status == 200
    wait_for_lag_zero(settings)
    query = f"start_time={HOUR0}&end_time={HOUR0 + 2 * HOUR_MS}"
    first = call(api, "GET", f"/v1/events?project_id=shop&model_id=churn&{query}&limit=5",
                 token=token)  # fmt: skip
    cursor = first.body["next_cursor"]
    assert cursor is not None
    foreign = [
        f"project_id=shop&model_id=churn&start_time={HOUR0}&end_time={HOUR0 + HOUR_MS}",
        f"project_id=shop&model_id=other&{query}",
        f"project_id=shop&model_id=churn&{query}&event_id=e-0001",
        "project_id=shop&model_id=churn&event_id=e-0001",
    ]
    for other in foreign:
        refused = call(api, "GET", f"/v1/events?{other}&cursor={cursor}", token=token)
        assert refused.status == 400, other
        assert "'cursor' belongs to another query" in refused.body["error"]
    # The rest of the pages, with another page size and in CSV on the way: every event once.
    seen = [row["__event_id"] for row in first.body["rows"]]
    csv_page = call(api, "GET", f"/v1/events?project_id=shop&model_id=churn&{query}&limit=3"
                    f"&format=csv&cursor={cursor}", token=token)  # fmt: skip
    assert csv_page.status == 200
    seen += [line.split(",")[0] for line in csv_page.raw.decode().splitlines()[1:]]
    cursor = csv_page.headers["X-Next-Cursor"]
    while cursor:
        page = call(api, "GET", f"/v1/events?project_id=shop&model_id=churn&{query}&limit=7"
                    f"&cursor={cursor}", token=token)  # fmt: skip
        assert page.status == 200, page.body
        seen += [row["__event_id"] for row in page.body["rows"]]
        cursor = page.body["next_cursor"]
    assert sorted(seen) == sorted(e["event_id"] for e in events)


# --- 4. query parameters, 5. Content-Type, 6. plain words, 7. headers (no worker needed) ----------


def test_every_route_refuses_a_query_parameter_it_does_not_take(
    settings: Settings, start_api: StartApi
) -> None:
    api = start_api()
    token = token_for(api)
    routes = {
        (route.method, re.sub(r"\{[^}]+\}", "x", route.resource.canonical))
        for route in create_app(Settings(), internal_secret="routes-only").router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert len(routes) >= 11
    for method, path in sorted(routes):
        body = orjson.dumps(ids_body("a")) if method in ("POST", "PATCH", "DELETE") else b""
        answer = send(api, method, f"{path}?zz_typo=1&strat=2", body,
                      {"Authorization": f"Bearer {token}",
                       "Content-Type": "application/json"})  # fmt: skip
        assert answer.status == 400, (method, path, answer.raw)
        assert "unknown query parameter(s) 'strat', 'zz_typo'" in answer.body["error"]
    metrics = "/v1/metrics?project_id=shop&model_id=churn&start=0&end=1"
    twice = call(api, "GET", metrics + "&end=2", token=token)
    assert (twice.status, twice.body["error"]) == (
        400,
        "query parameter 'end' is given twice; give it once",
    )


def test_json_routes_refuse_another_content_type_with_415(
    settings: Settings, start_api: StartApi
) -> None:
    api = start_api()
    register(settings)
    token = token_for(api, "shop")
    auth = {"Authorization": f"Bearer {token}"}
    publish = orjson.dumps({**MODEL, "events": [{"event_id": "e1", "event": {"age": 3}}]})
    delete = orjson.dumps(ids_body("e1"))
    routes = [("POST", "/v1/events", publish, 200), ("PATCH", "/v1/events", publish, 200),
              ("POST", "/v1/events/delete", delete, 202),
              ("DELETE", "/v1/events", delete, 202)]  # fmt: skip
    for method, path, body, ok in routes:
        for refused_type in ("application/x-www-form-urlencoded", "text/plain",
                             "application/json; charset=latin-1"):  # fmt: skip
            answer = send(api, method, path, body, {**auth, "Content-Type": refused_type})
            assert answer.status == 415, (method, path, refused_type)
            assert answer.headers["Content-Type"].startswith("application/json")
            assert "Content-Type" in answer.body["error"] or "UTF-8" in answer.body["error"]
        for taken in ({"Content-Type": "application/json; charset=UTF-8"}, {}):
            answer = send(api, method, path, body, {**auth, **taken})
            assert answer.status == ok, (method, path, taken, answer.body)
    form = send(api, "POST", "/v1/events", publish,
                {**auth, "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert form.body["error"] == (
        "this route takes a JSON body: send 'Content-Type: application/json' (got "
        "\"application/x-www-form-urlencoded\"); with curl, -H 'Content-Type: application/json'"
    )


def test_errors_are_in_plain_words_and_nested_bodies_are_4xx(
    settings: Settings, start_api: StartApi
) -> None:
    api = start_api()
    register(settings)
    token = token_for(api, "shop")
    bad = [
        ("POST", "/v1/events/delete", ids_body("a", update_metrics=None), "got null"),
        ("POST", "/v1/events/delete", {**MODEL, "time_range": [True]}, "got [true]"),
        ("POST", "/v1/events/delete", {**MODEL, "event_ids": ["a", None]}, "got null"),
        ("POST", "/v1/events/delete", deep_json({**MODEL, "event_ids": DEEP}, 300), "got [[[["),
        ("POST", "/v1/events/delete", deep_json({**MODEL, "event_ids": [DEEP]}, 300), "got [[["),
        ("DELETE", "/v1/events", deep_json({**MODEL, "event_ids": [DEEP]}, 1000), "event_ids[0]"),
        ("POST", "/v1/events/delete", deep_json({**MODEL, "time_range": DEEP}, 1000),
         "'time_range' must be an object"),
        ("POST", "/v1/events/delete", {"project_id": None, "model_id": "m"}, "'project_id'"),
        ("POST", "/v1/events", {**MODEL, "events": None}, "got null"),
        ("POST", "/v1/events", {**MODEL, "events": [{"event": None}]}, "got null"),
        ("PATCH", "/v1/events", {**MODEL, "events": [{"event_id": False, "event": {}}]},
         "got false"),
        ("POST", "/v1/events", deep_json({**MODEL, "events": [{"event": {"n": DEEP}}]}, 1000),
         "nested more than 64 levels"),
        ("PATCH", "/v1/events", deep_json({**MODEL, "events": [{"event_id": DEEP, "event": {}}]},
                                          1000), "event id must be a string or integer"),
        ("GET", "/v1/deletions/it's", None, 'no deletion "it\'s"'),
        ("GET", "/v1/events?project_id=shop&model_id=churn&event_id=a&format=xml", None,
         'got "xml"'),
    ]  # fmt: skip
    for method, path, body, words in bad:
        if isinstance(body, bytes):
            answer = send(api, method, path, body, json_headers(token))
        else:
            answer = call(api, method, path, body, token=token)
        assert 400 <= answer.status < 500, (path, body, answer.raw[:200])
        message = answer.body["error"] + "".join(e["error"] for e in answer.body.get("errors", []))
        assert words in message, message
        assert not PYTHON_REPR.search(message), message
    # Nested deeper than any JSON parser here reads: a 400, not a 500.
    too_deep = b'{"project_id": "shop", "model_id": "churn", "events": ' + b"[" * 5000
    answer = send(api, "POST", "/v1/events", too_deep, {"Authorization": f"Bearer {token}"})
    assert answer.status == 400
    assert answer.body["error"].startswith("the body is not valid JSON")


def test_refused_deletes_carry_the_named_models_real_window(
    settings: Settings, start_api: StartApi
) -> None:
    api = start_api(settings.with_overrides(delete_requests_per_day=5))
    register(settings)
    token = token_for(api, "shop")
    for _ in range(2):
        assert call(api, "POST", "/v1/events/delete", ids_body("a"), token=token).status == 202
    json_type = {"Content-Type": "application/json"}
    auth = {"Authorization": f"Bearer {token}", **json_type}
    body = orjson.dumps(ids_body("a"))
    refusals = [
        ("no token", "POST", "/v1/events/delete", body, json_type, 401),
        ("a wrong token", "DELETE", "/v1/events", body,
         {**json_type, "Authorization": "Bearer nope"}, 401),
        ("not JSON", "POST", "/v1/events/delete", body[:-3], auth, 400),
        ("JSON-like text", "POST", "/v1/events/delete",
         b"{'project_id': 'shop', 'model_id': 'churn'}", auth, 400),
        ("a form", "POST", "/v1/events/delete", b"project_id=shop&model_id=churn&event_ids=a",
         {**auth, "Content-Type": "application/x-www-form-urlencoded"}, 415),
        ("an unknown query parameter", "POST", "/v1/events/delete?x=1", body, auth, 400),
        ("a bad field", "DELETE", "/v1/events",
         orjson.dumps(ids_body("a", update_metrics="yes")), auth, 400),
    ]  # fmt: skip
    for what, method, path, data, headers, status in refusals:
        answer = send(api, method, path, data, headers)
        assert answer.status == status, (what, answer.raw)
        assert answer.headers["X-RateLimit-Limit"] == "5", what
        assert answer.headers["X-RateLimit-Remaining"] == "3", what
    # No model named anywhere: the window of no model, the whole limit (documented).
    for data in (b"", b"{", b'{"event_ids": ["a"]}'):
        nameless = send(api, "POST", "/v1/events/delete", data, json_type)
        assert nameless.status == 401
        assert nameless.headers["X-RateLimit-Remaining"] == "5"
    answer = call(api, "POST", "/v1/events/delete", ids_body("a"), token=token)
    assert (answer.status, answer.headers["X-RateLimit-Remaining"]) == (202, "2")
