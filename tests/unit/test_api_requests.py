"""The API's request checks (SPEC §2 "Deletion" parameter table), tokens and shaping."""

from __future__ import annotations

import calendar
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.api.auth import TokenStore, bearer, create_token, hash_token
from driftline.api.deletions import deletion_messages, expected_commands
from driftline.api.rate_limit import Window, day_window
from driftline.api.requests import (
    MAX_DELETE_IDS,
    Cursor,
    RequestError,
    check_row,
    parse_delete,
    parse_hour,
    parse_publish,
    parse_slice,
)
from driftline.api.responses import csv_columns, deletion_status, public_row, to_csv
from driftline.state import instants
from driftline.state.spec import ModelSpec
from driftline.state.tabular import InvalidEventError
from driftline.topics.messages import decode_ingest, deletion_key, ingest_key
from driftline.topics.partitioning import partition_for

HOUR = 3600 * 1000
T0 = int(datetime(2026, 11, 22, tzinfo=UTC).timestamp() * 1000)
SPEC = ModelSpec.from_dict(
    {"project_id": "shop", "model_id": "fraud", "inputs": ["age"], "outputs": ["score"],
     "targets": ["is_fraud"], "metadata": ["channel"]}
)  # fmt: skip


def body(**fields: Any) -> dict[str, Any]:
    return {"project_id": "shop", "model_id": "fraud", **fields}


def rejected(raw: object) -> str:
    with pytest.raises(RequestError) as caught:
        parse_delete(raw)
    assert caught.value.status == 400
    return caught.value.message


# --- the parameter table --------------------------------------------------------------


def test_ids_are_deleted_once_each_in_request_order() -> None:
    request = parse_delete(body(event_ids=["b", "a", "b", 7, "a"]))
    assert request.event_ids == ("b", "a", "7")
    assert request.time_range is None
    assert request.kind == "ids"
    assert request.update_metrics is False


def test_up_to_10000_ids_are_accepted_and_more_are_refused() -> None:
    ids = [f"e{i}" for i in range(MAX_DELETE_IDS)]
    assert len(parse_delete(body(event_ids=ids)).event_ids or ()) == MAX_DELETE_IDS
    message = rejected(body(event_ids=[*ids, "one-more"]))
    assert "10,001 ids" in message
    assert "at most 10,000" in message


@pytest.mark.parametrize(
    ("ids", "problem"),
    [
        ([], "non-empty list"),
        ("a", "non-empty list"),
        ({"a": 1}, "non-empty list"),
        ([""], "event_ids[0] must be a non-empty string"),
        (["a", None], "event_ids[1]"),
        (["a", True], "event_ids[1]"),
        ([1.5], "event_ids[0]"),
        ([["a"]], "event_ids[0]"),
    ],
)
def test_event_ids_must_be_a_non_empty_list_of_non_empty_ids(ids: object, problem: str) -> None:
    assert problem in rejected(body(event_ids=ids))


def test_a_time_range_is_start_inclusive_end_exclusive_in_utc_ms() -> None:
    request = parse_delete(
        body(time_range={"start_time": "2026-11-22 00:00:00", "end_time": "2026-11-22 03:00:00"},
             update_metrics=True)
    )  # fmt: skip
    assert request.time_range == (T0, T0 + 3 * HOUR)
    assert request.kind == "range"
    assert request.update_metrics is True


def test_both_ids_and_time_range_is_refused() -> None:
    raw = body(event_ids=["a"], time_range={"start_time": "2026-11-22 00:00:00",
                                            "end_time": "2026-11-22 01:00:00"})  # fmt: skip
    assert "either 'event_ids' or 'time_range', not both" in rejected(raw)


@pytest.mark.parametrize("raw", [body(), body(event_ids=None, time_range=None)])
def test_neither_ids_nor_time_range_is_refused(raw: dict[str, Any]) -> None:
    assert "give 'event_ids'" in rejected(raw)


@pytest.mark.parametrize(
    "start",
    [
        "2026-11-22 00:00:00",  # the form deletes always took, UTC
        T0,  # UTC milliseconds as a JSON integer ...
        str(T0),  # ... or as text
        "2026-11-22T00:00:00Z",
        "2026-11-22T00:00:00+00:00",
        "2026-11-22T01:00:00+01:00",
        "2026-11-21T19:30:00-04:30",
        "2026-11-22 00:00:00.000Z",
    ],
)
def test_a_time_range_takes_every_form_the_other_routes_take(start: object) -> None:
    request = parse_delete(body(time_range={"start_time": start, "end_time": T0 + 2 * HOUR}))
    assert request.time_range == (T0, T0 + 2 * HOUR)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("start_time", "2026-11-22 00:30:00", "aligned to the hour"),
        ("start_time", "2026-11-22 00:00:15", "aligned to the hour"),
        ("end_time", "2026-11-22 05:59:59", "aligned to the hour"),
        ("start_time", "2026-11-22T00:00:00.001Z", "aligned to the hour"),
        ("start_time", T0 + 1, "aligned to the hour"),
        ("start_time", "2026-11-22T00:00:00+05:30", "aligned to the hour"),  # in UTC
        ("start_time", "2026-11-22T00:00:00", "has no time zone"),
        ("start_time", "2026-11-22 00:00", "has no time zone"),
        ("start_time", "22/11/2026 00:00:00", "is not a time"),
        ("start_time", "2026-13-22 00:00:00", "not a valid date"),
        ("start_time", "2026-11-22 24:00:00", "not a valid date"),
        ("start_time", "1969-12-31 23:00:00", "before 1970"),
        ("start_time", "1969-12-31T23:00:00Z", "before 1970"),
        ("start_time", -HOUR, "before 1970"),
        ("start_time", 1.5, "must be a string or an integer"),
        ("start_time", True, "got true"),
        ("end_time", None, "time_range.end_time is required"),
    ],
)
def test_times_must_be_hour_aligned_instants_from_1970(
    field: str, value: object, problem: str
) -> None:
    time_range: dict[str, object] = {"start_time": T0, "end_time": "2026-11-22 06:00:00"}
    time_range[field] = value
    message = rejected(body(time_range=time_range))
    assert problem in message
    assert f"time_range.{field}" in message
    assert_plain_words(message)


def assert_plain_words(message: str) -> None:
    """No Python repr in an error message (SPEC: plain words)."""
    for token in ("None", "b'", "bytearray", "True", "False", "Traceback"):
        assert token not in message, message


@pytest.mark.parametrize("end", ["2026-11-22 05:00:00", "2026-11-22 04:00:00"])
def test_start_must_be_before_end(end: str) -> None:
    message = rejected(body(time_range={"start_time": "2026-11-22 05:00:00", "end_time": end}))
    assert "start_time must be before time_range.end_time" in message


@pytest.mark.parametrize(
    ("time_range", "problem"),
    [
        ("2026-11-22 00:00:00", "must be an object"),
        ({"start_time": "2026-11-22 00:00:00"}, "time_range.end_time"),
        ({"start": "2026-11-22 00:00:00", "end_time": "2026-11-22 01:00:00"}, "unknown field"),
    ],
)
def test_time_range_must_be_an_object_with_both_times(time_range: object, problem: str) -> None:
    assert problem in rejected(body(time_range=time_range))


@pytest.mark.parametrize("value", ["true", 1, 0, None, "false"])
def test_update_metrics_must_be_a_boolean(value: object) -> None:
    assert "'update_metrics' must be true or false" in rejected(
        body(event_ids=["a"], update_metrics=value)
    )


@pytest.mark.parametrize("environment", ["baseline", "pre_production", "PRE_PRODUCTION"])
def test_a_baseline_cannot_be_edited_row_by_row(environment: str) -> None:
    message = rejected(body(event_ids=["a"], environment=environment))
    assert "baselines cannot be edited row by row" in message


def test_production_is_the_only_environment() -> None:
    assert parse_delete(body(event_ids=["a"], environment="production")).event_ids == ("a",)
    assert "'environment' must be 'production'" in rejected(body(event_ids=["a"], environment=3))


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ([], "JSON object"),
        ({"model_id": "fraud", "event_ids": ["a"]}, "'project_id' must be"),
        (body(model_id="a/b", event_ids=["a"]), "without '/'"),
        (body(model_id="", event_ids=["a"]), "'model_id' must be"),
        (body(event_id=["a"]), "unknown field(s) 'event_id'"),
    ],
)
def test_the_body_names_a_model_and_only_known_fields(raw: object, problem: str) -> None:
    assert problem in rejected(raw)


def test_parse_hour_gives_utc_milliseconds() -> None:
    assert parse_hour("1970-01-01 01:00:00", "t") == HOUR
    assert parse_hour("2026-11-22 00:00:00", "t") == T0
    assert parse_hour("1970-01-01T00:00:00Z", "t") == 0


# --- one time format (state.instants) -----------------------------------------------------


# hypothesis takes naive bounds and attaches the zone itself.
instants_since_1970 = st.datetimes(
    min_value=datetime(1970, 1, 1),  # noqa: DTZ001
    max_value=datetime(9999, 12, 30),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@given(instants_since_1970, st.integers(-14 * 60, 14 * 60))
def test_every_form_of_an_instant_reads_the_same_milliseconds(
    moment: datetime, offset_minutes: int
) -> None:
    """ms, ISO 8601 in any zone and the UTC form name one instant (to the millisecond)."""
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    expected = calendar.timegm(moment.utctimetuple()) * 1000 + moment.microsecond // 1000
    zone = timezone(timedelta(minutes=offset_minutes))
    forms: list[object] = [str(expected), expected, moment.isoformat(),
                           moment.astimezone(zone).isoformat(),
                           moment.isoformat().replace("+00:00", "Z")]  # fmt: skip
    if moment.microsecond == 0:
        forms.append(moment.strftime("%Y-%m-%d %H:%M:%S"))
    for form in forms:
        assert instants.parse_instant(form, "start") == expected, form


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "start is required"),
        (None, "start is required"),
        ("-1", "before 1970"),
        ("1969-12-31 23:59:59", "before 1970"),
        ("1969-12-31T23:59:59.999Z", "before 1970"),
        ("1970-01-01T00:30:00+01:00", "before 1970"),
        ("9" * 5000, "after the year 9999"),
        ("yesterday", "is not a time"),
        ("2026-11-22T10:00:00", "has no time zone"),
        ("2026-11-22", "has no time zone"),
        ([1], "got a list"),
    ],
)
def test_an_instant_that_is_no_time_since_1970_is_refused(raw: object, problem: str) -> None:
    with pytest.raises(ValueError, match="start") as caught:
        instants.parse_instant(raw, "start")
    message = str(caught.value)
    assert problem in message
    assert len(message) < 300  # the 5,000 digits are not echoed
    assert_plain_words(message)


def test_the_epoch_itself_is_accepted() -> None:
    assert instants.parse_instant("0", "start") == 0
    assert instants.parse_instant("1970-01-01 00:00:00", "start") == 0
    assert instants.parse_instant("1970-01-01T01:00:00+01:00", "start") == 0


# --- deletion messages and status --------------------------------------------------------


def decoded(partition_and_value: tuple[int, bytes], key: bytes) -> Any:
    return decode_ingest(
        key, partition_and_value[1], received_ms=0, offset=1, ref=0, max_bytes=1 << 20
    )


def test_ids_go_to_the_partition_of_their_event_in_chunks_that_fit_a_message() -> None:
    ids = [f"event-{i:05d}" for i in range(3000)]
    request = parse_delete(body(event_ids=ids))
    messages = deletion_messages(request, "d1", partitions=4, max_bytes=8192)
    seen: list[str] = []
    for partition, value in messages:
        assert len(value) <= 8192
        command = decoded((partition, value), deletion_key("shop", "fraud"))
        assert command.deletion_id == "d1"
        for event_id in command.event_ids:
            assert partition_for(ingest_key("shop", "fraud", event_id), 4) == partition
        seen.extend(command.event_ids)
    assert sorted(seen) == sorted(ids)
    expected = expected_commands(messages)
    assert sum(expected.values()) == len(messages) > 4
    assert set(expected) <= {"0", "1", "2", "3"}


def test_a_time_range_goes_to_every_partition() -> None:
    request = parse_delete(
        body(time_range={"start_time": "2026-11-22 00:00:00", "end_time": "2026-11-22 02:00:00"})
    )
    messages = deletion_messages(request, "d2", partitions=5, max_bytes=1 << 20)
    assert [p for p, _ in messages] == [0, 1, 2, 3, 4]
    assert expected_commands(messages) == {str(p): 1 for p in range(5)}
    command = decoded(messages[0], deletion_key("shop", "fraud"))
    assert (command.start_ms, command.end_ms) == (T0, T0 + 2 * HOUR)


def record(commands: int, deleted: int, state: str) -> dict[str, Any]:
    return {"model": "shop/fraud", "kind": "range", "commands": commands, "deleted": deleted,
            "state": state}  # fmt: skip


def test_status_is_done_when_every_partition_applied_all_its_commands() -> None:
    expected = {"0": 1, "1": 2}
    running = deletion_status("d", expected, {"0": record(1, 5, "done"), "1": record(1, 3, "done")})
    assert running == {"deletion_id": "d", "status": "running", "requested": 0, "deleted": 8,
                       "partitions_done": 1, "partitions": 2}  # fmt: skip
    done = deletion_status("d", expected, {"0": record(1, 5, "done"), "1": record(2, 4, "done")})
    assert (done["status"], done["deleted"], done["partitions_done"]) == ("done", 9, 2)
    unseen = deletion_status("d", expected, {})
    assert (unseen["status"], unseen["deleted"]) == ("running", 0)


def test_one_partition_at_the_daily_cap_makes_the_deletion_wait() -> None:
    records = {"0": record(1, 5, "done"), "1": record(1, 7, "waiting_for_daily_cap")}
    status = deletion_status("d", {"0": 1, "1": 1}, records)
    assert (status["status"], status["deleted"]) == ("waiting_for_daily_cap", 12)


# --- rate limit window -------------------------------------------------------------------


def test_the_window_is_the_utc_day_and_resets_at_midnight() -> None:
    now = datetime(2026, 11, 22, 23, 59, 30, tzinfo=UTC)
    day, reset = day_window(now)
    assert reset == int(datetime(2026, 11, 23, tzinfo=UTC).timestamp())
    assert day == reset // 86400 - 1
    window = Window(limit=3, used=4, reset_s=reset, now_s=now.timestamp())
    assert window.exceeded
    assert window.headers() == {"X-RateLimit-Limit": "3", "X-RateLimit-Remaining": "0",
                                "X-RateLimit-Reset": str(reset), "Retry-After": "30"}  # fmt: skip
    within = Window(limit=3, used=2, reset_s=reset, now_s=now.timestamp())
    assert within.headers()["X-RateLimit-Remaining"] == "1"
    assert "Retry-After" not in within.headers()


# --- tokens ------------------------------------------------------------------------------


def test_a_token_is_stored_only_as_its_hash_and_scoped_to_its_projects(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = create_token(path, ["shop"], name="ci")
    other = create_token(path, [], all_projects=True)
    text = path.read_text()
    assert token not in text
    assert other not in text
    assert hash_token(token) in text
    assert path.stat().st_mode & 0o077 == 0
    store = TokenStore(path)
    shop = store.authenticate(f"Bearer {token}")
    assert shop is not None
    assert shop.name == "ci"
    assert shop.may_use("shop")
    assert not shop.may_use("bank")
    everything = store.authenticate(f"bearer {other}")
    assert everything is not None
    assert everything.may_use("bank")
    assert store.authenticate(f"Bearer {token}x") is None
    assert store.authenticate(token) is None
    assert store.authenticate(None) is None


def test_the_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = TokenStore(path)
    assert store.authenticate("Bearer nothing-yet") is None
    first = create_token(path, ["shop"])
    assert store.authenticate(f"Bearer {first}") is not None
    second = create_token(path, ["bank"])
    assert store.authenticate(f"Bearer {second}") is not None
    path.write_text(json.dumps({"tokens": []}))
    assert store.authenticate(f"Bearer {first}") is None


def test_a_token_needs_a_project(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one --project"):
        create_token(tmp_path / "t.json", [])
    with pytest.raises(ValueError, match="without '/'"):
        create_token(tmp_path / "t.json", ["a/b"])


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer ", None),
     ("", None), (None, None)],
)  # fmt: skip
def test_bearer_header(header: str | None, token: str | None) -> None:
    assert bearer(header) == token


# --- publishing rows -----------------------------------------------------------------------


def test_publish_rows_are_checked_one_by_one() -> None:
    batch = parse_publish(body(events=[{"event": {"age": 1}}]))
    assert (batch.project_id, batch.model_id, len(batch.rows)) == ("shop", "fraud", 1)
    ok = check_row(SPEC, {"event_id": 5, "event_timestamp": T0, "event": {"age": 3}}, 0, False)
    assert (ok.event_id, ok.timestamp_ms, ok.columns) == ("5", T0, {"age": 3})
    generated = check_row(SPEC, {"event": {"age": 3}}, 0, False)
    assert generated.event_id
    assert generated.timestamp_ms is None


@pytest.mark.parametrize(
    ("row", "update", "problem"),
    [
        ({"event_timestamp": 1}, False, "events[2].event must be an object"),
        ({"event": [1]}, False, "events[2].event must be an object"),
        ("row", False, "events[2] must be an object"),
        ({"event": {}, "event_timestamp": -1}, False, "non-negative integer"),
        ({"event": {}, "event_timestamp": "2026-01-01"}, False, "non-negative integer"),
        ({"event": {}, "event_timestamp": True}, False, "non-negative integer"),
        ({"event": {"is_fraud": 1}}, True, "an update needs 'event_id'"),
        ({"event": {}, "id": "a"}, False, "unknown field(s) 'id'"),
    ],
)
def test_a_bad_row_says_which_and_why(row: object, update: bool, problem: str) -> None:
    with pytest.raises(InvalidEventError, match=r".*") as caught:
        check_row(SPEC, row, 2, update)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (body(events=[]), "non-empty list"),
        (body(events={"a": 1}), "non-empty list"),
        (body(events=[{}], extra=1), "unknown field(s) 'extra'"),
        ({"events": [{}]}, "'project_id' must be"),
    ],
)
def test_a_publish_body_names_a_model_and_its_events(raw: object, problem: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_publish(raw)
    assert problem in caught.value.message


# --- slices ----------------------------------------------------------------------------


def test_slice_query_by_time_and_ids() -> None:
    query = parse_slice(
        [("project_id", "shop"), ("model_id", "fraud"), ("start_time", str(T0)),
         ("end_time", "2026-11-22T02:00:00+00:00"), ("event_id", "a"), ("event_id", "b"),
         ("format", "csv"), ("limit", "10")]
    )  # fmt: skip
    assert query.time_range == (T0, T0 + 2 * HOUR)
    assert query.event_ids == ("a", "b")
    assert (query.format, query.limit, query.cursor) == ("csv", 10, Cursor())


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        ([], "'project_id' must be"),
        ([("format", "json")], "give start_time and end_time"),
        ([("start_time", "1")], "end_time is required"),
        ([("start_time", "2"), ("end_time", "1")], "start_time must be before end_time"),
        ([("start_time", "2026-11-22T00:00:00"), ("end_time", "9")], "has no time zone"),
        ([("start_time", "yesterday"), ("end_time", "9")], "is not a time"),
        ([("start_time", "1969-12-31 00:00:00"), ("end_time", "9")], "before 1970"),
        ([("event_id", "a"), ("format", "xml")], "'format' must be json or csv"),
        ([("event_id", "a"), ("limit", "0")], "'limit' must be between 1 and 10,000"),
        ([("event_id", "a"), ("limit", "10001")], "'limit' must be between"),
        ([("event_id", "a"), ("limit", "ten")], "'limit' must be an integer"),
        ([("event_id", "a"), ("cursor", "not-a-cursor")], "'cursor' is not one this API gave"),
        ([("event_id", "a"), ("limit", "1"), ("limit", "2")], "given twice"),
        ([("event_id", "a"), ("start", "1")], "unknown query parameter(s) 'start'"),
        ([("event_id", "")], "event_id[0]"),
    ],
)
def test_slice_query_errors(items: list[tuple[str, str]], problem: str) -> None:
    named = [("project_id", "shop"), ("model_id", "fraud")] if items else []
    with pytest.raises(RequestError) as caught:
        parse_slice(named + items)
    assert caught.value.status == 400
    assert problem in caught.value.message


def test_a_cursor_round_trips() -> None:
    cursor = Cursor(3, "00ff", 0, "0123abcd")
    assert Cursor.decode(cursor.encode()) == cursor
    assert Cursor.decode(Cursor(offset=1000, query="0123abcd").encode()).offset == 1000


def test_rows_carry_the_event_id_and_csv_has_a_header() -> None:
    rows = [
        public_row({"event_id": "a", "event_timestamp": T0,
                    "event": {"age": 3, "score": 0.5, "is_fraud": None, "tags": [1, 2]}}),
        public_row({"event_id": "b,c", "event_timestamp": T0 + 1, "event": {"channel": True}}),
    ]  # fmt: skip
    assert rows[0]["__event_id"] == "a"
    header = csv_columns(SPEC, rows)
    assert header == ["__event_id", "__event_timestamp", "age", "score", "is_fraud", "channel",
                      "tags"]  # fmt: skip
    text = to_csv(header, rows)
    assert text.splitlines() == [
        "__event_id,__event_timestamp,age,score,is_fraud,channel,tags",
        f"a,{T0},3,0.5,,,[1,2]".replace("[1,2]", '"[1,2]"'),
        f'"b,c",{T0 + 1},,,,true,',
    ]


# --- the OpenAPI document ----------------------------------------------------------------


def test_the_openapi_document_is_valid_and_lists_exactly_the_apps_routes() -> None:
    import yaml
    from openapi_spec_validator import validate

    from driftline.api.app import OPENAPI_PATH, create_app
    from driftline.settings import Settings

    document = yaml.safe_load(OPENAPI_PATH.read_text())
    validate(document)
    documented = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    app = create_app(Settings(), internal_secret="routes-only")
    served = {
        (route.resource.canonical, route.method)
        for route in app.router.routes()
        if route.resource is not None
    }
    assert documented == served


def test_a_bad_row_never_costs_the_valid_ones() -> None:
    from driftline.api.requests import publish_messages

    rows = [{"event_id": "a", "event": {"is_fraud": 1, "age": 5}}, {"event": {"is_fraud": 0}},
            {"event_id": "b", "event": {"channel": "x" * 500}}]  # fmt: skip
    messages, ids, errors, dropped = publish_messages(SPEC, rows, update=True, max_bytes=300)
    assert ids == ["a"]
    assert [e["index"] for e in errors] == [1, 2]
    assert "the limit is 300" in errors[1]["error"]
    assert dropped == {"age": 1}
    ((key, value, partition),) = messages
    assert (key, partition) == (ingest_key("shop", "fraud", "a"), -1)
    assert json.loads(value)["op"] == "update"


def test_the_cli_prints_a_new_token_once_and_stores_its_hash(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from driftline.cli import main

    path = tmp_path / "tokens.json"
    env = {"DRIFTLINE_API_TOKENS_FILE": str(path)}
    result = CliRunner().invoke(
        main, ["api", "token", "--project", "shop", "--project", "bank", "--name", "ci"], env=env
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    principal = TokenStore(path).authenticate(f"Bearer {token}")
    assert principal is not None
    assert principal.projects == {"shop", "bank"}
    assert token not in path.read_text()
    refused = CliRunner().invoke(main, ["api", "token"], env=env)
    assert refused.exit_code == 2
    assert "at least one --project" in refused.output
