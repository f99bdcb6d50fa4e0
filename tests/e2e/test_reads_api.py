"""Every client read through the API, on the real broker, Redis and worker processes: one
event, a model's counters, its dead letters, the pipeline's progress (``final``), and the
worker's port closed to anyone without the secret only the API shares with it."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from confluent_kafka import Producer

from driftline.cli import main
from driftline.client import ApiError, Driftline
from driftline.internal_secret import internal_secret
from driftline.settings import Settings
from driftline.stack.api import ApiProcess
from driftline.state.bins import HOUR_MS
from driftline.topics.catalog import Topics
from driftline.topics.internal_routes import HEADER
from driftline.topics.messages import encode_ingest, ingest_key
from driftline.topics.partitioning import partition_for
from driftline.topics.waiting import wait_until
from tests.support.api import StartApi, call, register, token_for
from tests.support.hourly_bins import bins_in_redis
from tests.support.models import CHURN_SPEC, HOUR0

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

COLUMNS = {"age": 30, "plan": "pro", "score": 0.25, "churned": None}


def produce(
    settings: Settings, messages: list[tuple[bytes, bytes]], misroute: bool = False
) -> None:
    """Raw messages on the ingest topic, each on its key's partition, or (``misroute``: as
    another partitioner would) on the next one, from which the merge agent forwards them."""
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    topic = Topics.for_settings(settings).ingest.name
    partitions = settings.ingest_partitions
    for key, value in messages:
        partition = (partition_for(key, partitions) + misroute) % partitions
        producer.produce(topic, value, key, partition=partition)
    assert producer.flush(30) == 0


def insert(project_id: str, model_id: str, event_id: str, hour: int = 0) -> tuple[bytes, bytes]:
    value = encode_ingest("insert", project_id, model_id, event_id, COLUMNS, HOUR0 + hour * HOUR_MS)
    return ingest_key(project_id, model_id, event_id), value


def worker_get(url: str, secret: str | None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={HEADER: secret} if secret else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            return error.code, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return error.code, raw.decode(errors="replace")  # aiohttp's own 404 page


def final(api: ApiProcess, token: str) -> bool:
    answer = call(api, "GET", "/v1/status", token=token)
    assert answer.status == 200, answer.body
    return bool(answer.body["final"])


def test_events_are_read_through_the_api_and_the_worker_port_needs_the_secret(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    worker = start_worker(settings)
    api = start_api(settings)
    register(settings)
    with Driftline(settings) as client:
        client.register_model({**_spec(), "project_id": "other", "model_id": "m"})
    shop, other = token_for(api, "shop"), token_for(api, "other")
    produce(settings, [insert("shop", "churn", "a/b"), insert("other", "m", "secret1")])
    wait_until(lambda: final(api, shop), timeout_s=60, what="the bins to be final")

    found = call(api, "GET", "/v1/events/shop/churn/a/b", token=shop)
    assert found.status == 200, found.body
    assert found.body == {"project_id": "shop", "model_id": "churn", "event_id": "a/b",
                          "event_timestamp": HOUR0, "event": COLUMNS}  # fmt: skip
    assert call(api, "GET", "/v1/events/shop/churn/a%2Fb", token=shop).body == found.body
    missing = call(api, "GET", "/v1/events/shop/churn/nope", token=shop)
    assert missing.status == 404
    assert 'no event "nope" in model shop/churn' in missing.body["error"]
    assert call(api, "GET", "/v1/events/shop/nomodel/x", token=shop).status == 404

    # Another project's event: only its own token reads it, through the API only.
    assert call(api, "GET", "/v1/events/other/m/secret1", token=other).status == 200
    refused = call(api, "GET", "/v1/events/other/m/secret1", token=shop)
    assert refused.status == 403
    assert "project 'other'" in refused.body["error"]
    assert call(api, "GET", "/v1/events/other/m/secret1").status == 401

    secret = internal_secret(settings)
    internal = f"{worker.url}/internal/events/other/m/secret1"
    for wrong in (None, secret + "x"):
        status, body = worker_get(internal, wrong)
        assert status == 401
        assert "answers only the Driftline API" in body["error"]
    status, body = worker_get(internal, secret)
    assert (status, body["event_id"]) == (200, "secret1")
    for public in ("/v1/events/other/m/secret1", "/v1/models/other/m/counters",
                   f"/v1/metrics/other/m?start=0&end={2**50}"):  # fmt: skip
        assert worker_get(worker.url + public, secret)[0] == 404, public  # no such view
    assert worker_get(f"{worker.url}/health", None)[0] == 200
    assert worker.settings.worker_host == "127.0.0.1"

    # The client reads the same, with the API's own messages in its own error type.
    with Driftline(settings.with_overrides(api_url=api.url, api_token=shop)) as client:
        assert client.get_event("shop", "churn", "a/b") == found.body
        assert client.get_event("shop", "churn", "nope") is None
        with pytest.raises(ApiError, match="project 'other'") as caught:
            client.get_event("other", "m", "secret1")
        assert caught.value.status == 403
        bins = client.get_metrics("shop", "churn", HOUR0, HOUR0 + HOUR_MS)
        assert [b["counts"]["n"] for b in bins] == [1]
    unreachable = settings.with_overrides(api_url="http://127.0.0.1:9", api_token=shop)
    with (
        Driftline(unreachable) as down,
        pytest.raises(ApiError, match="cannot reach the Driftline"),
    ):
        down.get_event("shop", "churn", "a/b")


def test_counters_are_summed_over_every_partition(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    start_worker(settings)
    api = start_api(settings)
    register(settings)
    token = token_for(api, "shop")
    # Expected counts are what was sent: 6 undecodable messages spread over partitions,
    # 5 updates that carry an input (dropped 'age'), 3 updates whose insert never comes.
    broken = [(f"shop/churn/bad-{i}".encode(), b"{not json") for i in range(6)]
    inserts = [insert("shop", "churn", f"e-{i}") for i in range(5)]
    updates = [
        (ingest_key("shop", "churn", f"e-{i}"),
         encode_ingest("update", "shop", "churn", f"e-{i}", {"churned": True, "age": 1}))
        for i in range(5)
    ]  # fmt: skip
    parked = [
        (ingest_key("shop", "churn", f"ghost-{i}"),
         encode_ingest("update", "shop", "churn", f"ghost-{i}", {"churned": False}))
        for i in range(3)
    ]  # fmt: skip
    assert len({partition_for(key, settings.ingest_partitions) for key, _ in broken}) > 1
    produce(settings, broken + inserts)
    produce(settings, updates + parked)
    wait_until(lambda: final(api, token), timeout_s=60, what="the bins to be final")

    answer = call(api, "GET", "/v1/models/shop/churn/counters", token=token)
    assert answer.status == 200, answer.body
    assert answer.body == {"project_id": "shop", "model_id": "churn", "dead_letters": 6,
                           "dropped_fields": {"age": 5}, "forwarded": 0, "parked_updates": 3,
                           "partitions": settings.ingest_partitions}  # fmt: skip
    assert (
        call(api, "GET", "/v1/models/shop/churn/counters", token=token_for(api, "bank")).status
        == 403
    )
    unknown = call(api, "GET", "/v1/models/shop/churn/counters?x=1", token=token)
    assert unknown.status == 400
    assert "unknown query parameter(s) 'x'" in unknown.body["error"]
    with Driftline(settings.with_overrides(api_url=api.url, api_token=token)) as client:
        assert client.get_counters("shop", "churn")["dead_letters"] == 6


def test_dead_letters_are_listed_with_reasons_and_paged(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    start_worker(settings)
    api = start_api(settings)
    register(settings)
    shop, everyone = token_for(api, "shop"), token_for(api)
    produce(settings, [(b"shop/churn/t-1", b"{not json"), (b"shop/churn/t-2", b"\xff\xfe"),
                       (b"nomodel", b"{}"), (b"bank/loans/x", b"[]")])  # fmt: skip
    wait_until(lambda: final(api, shop), timeout_s=60, what="the bins to be final")

    everything = call(api, "GET", "/v1/models/shop/churn/dead-letters", token=shop)
    assert everything.status == 200, everything.body
    letters = everything.body["dead_letters"]
    assert everything.body["next_cursor"] is None
    assert [(x["key"], x["model"]) for x in letters] == [
        ("shop/churn/t-1", "shop/churn"),
        ("shop/churn/t-2", "shop/churn"),
    ]
    text, binary = letters
    assert (text["value"], text["value_encoding"]) == ("{not json", "utf-8")
    assert (binary["value_encoding"], base64.b64decode(binary["value"])) == ("base64", b"\xff\xfe")
    topic = Topics.for_settings(settings).ingest.name
    for letter in letters:
        assert letter["reason"]
        assert letter["source"]["topic"] == topic
        assert letter["source"]["partition"] == partition_for(
            letter["key"].encode(), settings.ingest_partitions
        )
        assert letter["time"].endswith("+00:00")

    # One a page: the cursor walks them all, and belongs to this listing only.
    seen, cursor = [], None
    while True:
        query = "?limit=1" + (f"&cursor={cursor}" if cursor else "")
        page = call(api, "GET", f"/v1/models/shop/churn/dead-letters{query}", token=shop).body
        seen += [x["offset"] for x in page["dead_letters"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        elsewhere = call(api, "GET", f"/v1/dead-letters?cursor={cursor}", token=everyone)
        assert elsewhere.status == 400
        assert "continues the dead letters of model shop/churn" in elsewhere.body["error"]
    assert seen == [x["offset"] for x in letters]
    for bad in ("limit=0", "limit=x", "cursor=zz", "colour=red"):
        answer = call(api, "GET", f"/v1/models/shop/churn/dead-letters?{bad}", token=shop)
        assert answer.status == 400, bad
        assert answer.body["error"], bad

    # Letters that name no model (or a model of another project) only for all projects.
    refused = call(api, "GET", "/v1/dead-letters", token=shop)
    assert refused.status == 403
    assert "only a token for all projects" in refused.body["error"]
    assert call(api, "GET", "/v1/models/bank/loans/dead-letters", token=shop).status == 403
    every = call(api, "GET", "/v1/dead-letters", token=everyone).body["dead_letters"]
    assert sorted((x["key"], x["model"]) for x in every) == [
        ("bank/loans/x", "bank/loans"), ("nomodel", None),
        ("shop/churn/t-1", "shop/churn"), ("shop/churn/t-2", "shop/churn"),
    ]  # fmt: skip
    with Driftline(settings.with_overrides(api_url=api.url, api_token=shop)) as client:
        assert [x["key"] for x in client.get_dead_letters("shop", "churn")] == [
            "shop/churn/t-1", "shop/churn/t-2"
        ]  # fmt: skip

    env = {**api.settings.to_env(), "DRIFTLINE_API_URL": api.url, "DRIFTLINE_API_TOKEN": shop}
    shown = CliRunner().invoke(main, ["dead-letters", "shop/churn", "--limit", "5"], env=env)
    assert shown.exit_code == 0, shown.output
    assert shown.output.count(f"[{topic} ") == 2
    assert "{not json" in shown.output
    assert "(base64)" in shown.output
    not_allowed = CliRunner().invoke(main, ["dead-letters"], env=env)
    assert not_allowed.exit_code == 1
    assert "only a token for all projects" in not_allowed.output


def test_status_is_final_only_once_every_event_sent_is_in_the_bins(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    api = start_api(settings)
    register(settings)
    token = token_for(api, "shop")
    # No worker yet: what is sent waits, and the merge stage says so. A fifth of it is on
    # the wrong partitions: final must wait for the copies forwarded to the right ones.
    events = [insert("shop", "churn", f"e-{i}", hour=i % 3) for i in range(300)]
    produce(settings, events[:240])
    produce(settings, events[240:], misroute=True)
    waiting = call(api, "GET", "/v1/status?project_id=shop&model_id=churn", token=token)
    assert waiting.status == 200, waiting.body
    assert waiting.body["final"] is False
    merge = waiting.body["stages"][0]
    assert (merge["stage"], merge["lag"], merge["caught_up"]) == ("merge", 300, False)
    assert [s["stage"] for s in waiting.body["stages"]] == ["merge", "bins", "serving"]

    env = {**settings.to_env(), "DRIFTLINE_API_URL": api.url, "DRIFTLINE_API_TOKEN": token}
    runner = CliRunner()
    not_final = runner.invoke(main, ["status", "--project", "shop", "--model", "churn"], env=env)
    assert not_final.exit_code == 1, not_final.output
    assert "final: no" in not_final.output
    timed_out = runner.invoke(main, ["status", "--wait", "--timeout", "1"], env=env)
    assert timed_out.exit_code == 1, timed_out.output
    assert "the bins are not final after 1s (lag: merge 300" in timed_out.output

    start_worker(settings)
    waited = runner.invoke(main, ["status", "--wait", "--timeout", "90"], env=env)
    assert waited.exit_code == 0, waited.output
    assert "final: yes" in waited.output
    # Final means read now, and every event sent is in its bin.
    assert sorted(b["counts"]["n"] for b in bins_in_redis(settings).values()) == [100, 100, 100]
    done = call(api, "GET", "/v1/status", token=token).body
    assert done["final"] is True
    assert all(stage["caught_up"] for stage in done["stages"])
    notifier_group = f"{settings.topic_prefix}-worker-notifier"
    assert done["notifications"] == {"pending": 0, "failed": 0, "consumer_group": notifier_group}

    assert call(api, "GET", "/v1/status").status == 401
    assert call(api, "GET", "/v1/status?project_id=shop&model_id=churn",
                token=token_for(api, "bank")).status == 403  # fmt: skip
    half = call(api, "GET", "/v1/status?project_id=shop", token=token)
    assert half.status == 400
    assert "give both 'project_id' and 'model_id'" in half.body["error"]


def _spec() -> dict[str, Any]:
    return dict(CHURN_SPEC)
