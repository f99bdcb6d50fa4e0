"""The pure parts of the API's reads: the internal secret, dead-letter pages and their
cursors, counters summed over partitions, and when the pipeline's bins are final."""

from __future__ import annotations

import base64
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from driftline.api import reads
from driftline.api.reads import (
    decode_cursor,
    encode_cursor,
    letter_json,
    notifications_body,
    parse_page,
    status_body,
    sum_counters,
)
from driftline.api.requests import RequestError, query_parameters_of
from driftline.internal_secret import internal_secret
from driftline.settings import Settings
from driftline.topics.catalog import Topics
from driftline.topics.dead_letters import DeadLetter, StoredLetter, letter_model
from driftline.topics.internal_routes import matches
from driftline.topics.progress import StageProgress, copies_to_wait_for, pending_partitions

# --- the internal secret ---------------------------------------------------------------


def test_a_configured_secret_is_used_as_given(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, internal_secret="from-env")
    assert internal_secret(settings) == "from-env"
    assert not (tmp_path / "internal-secret").exists()


def test_without_one_a_private_file_is_made_once_and_shared(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    with ThreadPoolExecutor(8) as pool:  # processes starting together agree on one secret
        found = set(pool.map(lambda _: internal_secret(settings), range(32)))
    (secret,) = found
    assert len(secret) >= 32
    path = tmp_path / "home" / "internal-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == secret
    assert [p.name for p in path.parent.iterdir()] == ["internal-secret"]  # no leftovers
    assert internal_secret(Settings(home=tmp_path / "home")) == secret


def test_an_empty_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "internal-secret").write_text("")
    with pytest.raises(ValueError, match="is empty; delete it"):
        internal_secret(Settings(home=tmp_path))


def test_only_the_exact_secret_matches() -> None:
    assert matches("s3cret", "s3cret")
    for given in (None, "", "s3cre", "s3cret ", "S3CRET"):
        assert not matches("s3cret", given)


def test_settings_read_the_secret_from_the_environment() -> None:
    assert Settings.from_env({"DRIFTLINE_INTERNAL_SECRET": "x"}).internal_secret == "x"
    assert Settings.from_env({"DRIFTLINE_INTERNAL_SECRET": ""}).internal_secret is None


# --- dead letters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "model"),
    [
        (b"shop/churn/e-1", "shop/churn"),
        (b"shop/churn/a/b", "shop/churn"),  # ids may hold '/'
        (b"shop/churn/1750000000000", "shop/churn"),  # a bin key
        (b"shop/churn", None),
        (b"nomodel", None),
        (b"/churn/x", None),
        (None, None),
    ],
)
def test_a_letter_names_the_model_its_key_names(key: bytes | None, model: str | None) -> None:
    assert letter_model(key) == model


def test_letters_keep_text_as_text_and_other_bytes_as_base64() -> None:
    letter = DeadLetter(b"shop/churn/e", b"\xff\x00{", "not JSON", "t.ingest", 3, 41, 70_000)
    body = letter_json(StoredLetter(9, 1_750_000_000_123, letter))
    assert body == {
        "offset": 9,
        "time": "2025-06-15T15:06:40.123+00:00",
        "model": "shop/churn",
        "reason": "not JSON",
        "source": {"topic": "t.ingest", "partition": 3, "offset": 41},
        "key": "shop/churn/e",
        "key_encoding": "utf-8",
        "value": base64.b64encode(b"\xff\x00{").decode(),
        "value_encoding": "base64",
        "truncated_from": 70_000,
    }
    bare = letter_json(StoredLetter(0, 0, DeadLetter(None, None, "r", "t", 0, 0)))
    assert (bare["key"], bare["key_encoding"], bare["value"], bare["truncated_from"]) == (
        None, None, None, None,
    )  # fmt: skip


def test_a_cursor_goes_on_only_in_the_listing_that_gave_it() -> None:
    cursor = encode_cursor("shop/churn", 1234)
    assert decode_cursor(cursor, "shop/churn") == 1234
    with pytest.raises(RequestError, match="continues the dead letters of model shop/churn"):
        decode_cursor(cursor, "shop/other")
    with pytest.raises(RequestError, match="of every model"):
        decode_cursor(encode_cursor("*", 5), "shop/churn")
    for bad in ("zz", "", encode_cursor("shop/churn", -1), "eyJ4IjogMX0"):
        with pytest.raises(RequestError, match="not one this API gave"):
            decode_cursor(bad, "shop/churn")


def test_the_dead_letter_routes_take_a_limit_and_a_cursor_only() -> None:
    """Any other query parameter is refused by the API's one rule (``takes_query``)."""
    for handler in (reads.get_model_dead_letters, reads.get_all_dead_letters):
        assert query_parameters_of(handler) == (frozenset({"limit", "cursor"}), frozenset())
    assert query_parameters_of(reads.get_status)[0] == {"project_id", "model_id"}
    assert query_parameters_of(reads.get_counters)[0] == frozenset()


def test_a_page_takes_a_limit_and_a_cursor() -> None:
    assert parse_page({}, "m/n") == (100, 0)
    assert parse_page({"limit": "5", "cursor": encode_cursor("m/n", 7)}, "m/n") == (5, 7)
    for query, message in [
        ({"limit": "0"}, "between 1 and 1,000"),
        ({"limit": "1001"}, "between 1 and 1,000"),
        ({"limit": "ten"}, "whole number"),
    ]:
        with pytest.raises(RequestError, match=message) as caught:
            parse_page(query, "m/n")
        assert caught.value.status == 400


# --- counters --------------------------------------------------------------------------


def test_counters_are_summed_over_the_partitions() -> None:
    partitions = [
        {"dead_letters": 2, "dropped_fields": {"age": 1}, "forwarded": 0, "parked_updates": 1},
        {"dead_letters": 0, "dropped_fields": {"age": 2, "score": 5}, "forwarded": 3,
         "parked_updates": 0},
        {"dead_letters": 1, "dropped_fields": {}, "forwarded": 0, "parked_updates": 4},
    ]  # fmt: skip
    total = sum_counters(partitions)
    assert total == {"dead_letters": 3, "dropped_fields": {"score": 5, "age": 3},
                     "forwarded": 3, "parked_updates": 5, "partitions": 3}  # fmt: skip
    assert list(total["dropped_fields"]) == ["score", "age"]  # most dropped first


# --- progress --------------------------------------------------------------------------


def test_only_partitions_behind_their_end_are_read_and_markers_are_not_messages() -> None:
    asked: list[tuple[int, int, int]] = []
    data = {1: True, 2: False}  # partition 2: only a transaction marker left

    def has_messages(partition: int, start: int, end: int) -> bool:
        asked.append((partition, start, end))
        return data[partition]

    ends = {0: 10, 1: 10, 2: 10, 3: 0}
    applied: dict[int, int | None] = {0: 10, 1: 4, 2: 9, 3: None}
    assert pending_partitions(ends, applied, has_messages) == [1]
    assert asked == [(1, 4, 10), (2, 9, 10)]
    # Nothing committed yet reads from the start.
    assert pending_partitions({0: 5}, {0: None}, lambda p, s, e: (s, e) == (0, 5)) == [0]


def stage(name: str, caught_up: bool, lag: int = 0) -> StageProgress:
    return StageProgress(name, f"t.{name}", lag, caught_up)


@pytest.mark.parametrize(
    ("merge", "bins", "unemitted", "serving", "final"),
    [
        (True, True, 0, True, True),
        (False, True, 0, True, False),
        (True, False, 0, True, False),
        (True, True, 2, True, False),  # changed bins wait for the emit interval
        (True, True, None, True, False),  # a bins partition's worker did not answer
        (True, True, 0, False, False),
    ],
)
def test_bins_are_final_only_when_every_stage_is_done(
    merge: bool, bins: bool, unemitted: int | None, serving: bool, final: bool
) -> None:
    topics = Topics.for_settings(Settings(topic_prefix="p"))
    body = status_body(
        stage("merge", merge), stage("bins", bins), unemitted, stage("serving", serving), topics
    )
    assert body["final"] is final
    assert [s["stage"] for s in body["stages"]] == ["merge", "bins", "serving"]
    assert [s["consumer_group"] for s in body["stages"]] == [
        "p-worker-merge", "p-worker-bins", "p-worker-serving",
    ]  # fmt: skip
    assert body["stages"][1]["caught_up"] is (bins and unemitted == 0)
    assert body["stages"][1]["unemitted_bins"] == unemitted


def test_notifications_pending_are_the_changes_not_done_and_failed_the_dead_letters() -> None:
    topics = Topics.for_settings(Settings(topic_prefix="p"))
    behind = StageProgress("notifier", "p.alerts", lag=3, caught_up=False)
    assert notifications_body(behind, 2, topics) == {
        "pending": 3, "failed": 2, "consumer_group": "p-worker-notifier",
    }  # fmt: skip
    # Caught up: the lag left is the transactions' commit markers.
    done = StageProgress("notifier", "p.alerts", lag=1, caught_up=True)
    assert notifications_body(done, 0, topics)["pending"] == 0


# --- routing counters to the partitions' owners ---------------------------------------------


class FakeOwners:
    def __init__(self, owners: dict[int, str | None]) -> None:
        self.owners = owners

    def owners_of(self, partitions: list[int]) -> dict[int, str | None]:
        return {p: self.owners.get(p) for p in partitions}


def test_counters_come_from_each_partitions_owner_or_name_the_missing_ones() -> None:
    """Each partition is counted once, from its owner; a sum without some partition would
    be silently low, so those are named instead. The secret goes with every request."""
    import asyncio
    from typing import cast

    import aiohttp
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from driftline.api.workers import Workers, WorkerUnavailableError
    from driftline.topics.internal_routes import HEADER
    from driftline.topics.ownership import PartitionOwners

    async def counters(request: web.Request) -> web.Response:
        if request.headers.get(HEADER) != "s3cret":
            return web.json_response({"error": "no secret"}, status=401)
        assert request.match_info["model"] == "churn"
        record = {"dead_letters": 1, "dropped_fields": {}, "forwarded": 0, "parked_updates": 2}
        # Partition 5 was held here once: not this worker's any more, not counted.
        return web.json_response({"partitions": {"0": record, "1": record, "5": record}})

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/internal/models/{project}/{model}/counters", counters)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        url = str(server.make_url("")).rstrip("/")
        owners = FakeOwners({0: url, 1: url, 2: None, 3: "http://127.0.0.1:9"})
        try:
            async with aiohttp.ClientSession() as session:
                workers = Workers(cast(PartitionOwners, owners), session, "s3cret")
                with pytest.raises(WorkerUnavailableError, match=r"partition\(s\) 2, 3 \(not"):
                    await workers.counters("shop/churn", 4)
                found = await workers.counters("shop/churn", 2)
                assert sorted(found) == [0, 1]
                assert sum_counters(found.values())["parked_updates"] == 4
                unauthorised = Workers(cast(PartitionOwners, owners), session, "wrong")
                with pytest.raises(WorkerUnavailableError, match=r"partition\(s\) 0, 1"):
                    await unauthorised.counters("shop/churn", 2)
        finally:
            await server.close()

    asyncio.run(scenario())


def test_the_merge_stage_waits_for_copies_of_messages_sent_before_the_ends() -> None:
    """A message on another partition than its key's is applied as a copy appended to its
    key's partition; a copy of a message before the ends read must be applied too."""
    since = {0: 10, 1: 5}
    found = [
        (1, 5, "0:9"),  # a copy of a message before the ends: wait for it
        (1, 7, "0:3"),
        (1, 6, "0:12"),  # a copy of a message sent after: not this request's
        (0, 11, "1:4"),
        (0, 12, "nonsense"),
    ]
    assert copies_to_wait_for(found, since) == {1: 8, 0: 12}
    assert copies_to_wait_for([(1, 6, "0:12")], since) == {}
