"""The REST API on the real broker and Redis: auth, delete requests and their rate limit,
publishing over HTTP, slices, metrics, and deletions end to end through the workers (the
OpenAPI document against the running API: test_openapi_conformance.py)."""

from __future__ import annotations

import csv
import io
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from driftline.cli import main
from driftline.client import ApiError
from driftline.settings import Settings
from driftline.state.bins import HOUR_MS
from driftline.topics.waiting import wait_until
from tests.support.api import (
    StartApi,
    bin_counts,
    call,
    client_for,
    hour,
    ids_body,
    published,
    register,
    rows,
    serving_shop,
    token_for,
)
from tests.support.hourly_bins import bins_in_redis
from tests.support.models import HOUR0
from tests.support.pipeline import wait_for_lag_zero

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

HOUR0_TEXT = datetime.fromtimestamp(HOUR0 / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def range_body(first: int, last: int, **extra: Any) -> dict[str, Any]:
    time_range = {"start_time": hour(first), "end_time": hour(last)}
    return {"project_id": "shop", "model_id": "churn", "time_range": time_range, **extra}


def next_midnight() -> int:
    now = datetime.now(UTC)
    return int((now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1))
               .timestamp())  # fmt: skip


# --- auth and open endpoints --------------------------------------------------------------


def test_tokens_are_required_and_scoped_to_projects(
    settings: Settings, start_api: StartApi
) -> None:
    api = start_api()
    for path in ("/health", "/ready", "/openapi.yaml", "/openapi.json"):
        assert call(api, "GET", path).status == 200, path
    shop, bank = token_for(api, "shop"), token_for(api, "bank")
    query = "/v1/metrics?project_id=shop&model_id=churn&start=0&end=1"

    missing = call(api, "GET", query)
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in missing.body["error"]
    assert call(api, "GET", query, token=shop + "x").status == 401
    forbidden = call(api, "GET", query, token=bank)
    assert forbidden.status == 403
    assert "project 'shop'" in forbidden.body["error"]
    assert call(api, "POST", "/v1/events/delete", ids_body("a"), token=bank).status == 403
    assert call(api, "POST", "/v1/events", {"project_id": "shop", "model_id": "churn",
                "events": [{"event": {}}]}, token=bank).status == 403  # fmt: skip
    unknown = call(api, "GET", query, token=shop)
    assert unknown.status == 404
    assert "shop/churn is not registered" in unknown.body["error"]


# --- delete requests: validation, rate limit -------------------------------------------------


def test_invalid_delete_requests_carry_the_limit_headers_and_cost_no_quota(
    settings: Settings, start_api: StartApi
) -> None:
    api = start_api(settings.with_overrides(delete_requests_per_day=3))
    register(settings)
    token = token_for(api, "shop")
    reset = str(next_midnight())
    invalid = [
        (ids_body("a", time_range={"start_time": hour(0), "end_time": hour(1)}), "not both"),
        ({"project_id": "shop", "model_id": "churn"}, "give 'event_ids'"),
        (range_body(0, 1) | {"time_range": {"start_time": HOUR0_TEXT[:-5] + "30:00",
                                            "end_time": hour(1)}}, "aligned to the hour"),
        (range_body(2, 1), "must be before"),
        (ids_body(*[f"x{i}" for i in range(10_001)]), "at most 10,000"),
        (ids_body("a", update_metrics="yes"), "true or false"),
        (ids_body("a", environment="baseline"), "baselines cannot be edited row by row"),
        ({"project_id": "shop", "model_id": "nope", "event_ids": ["a"]}, "not registered"),
    ]  # fmt: skip
    for body, problem in invalid:
        answer = call(api, "POST", "/v1/events/delete", body, token=token)
        assert answer.status in (400, 404), (problem, answer.body)
        assert problem in answer.body["error"]
        assert answer.headers["X-RateLimit-Limit"] == "3"
        assert answer.headers["X-RateLimit-Remaining"] == "3", problem
        assert answer.headers["X-RateLimit-Reset"] == reset
    not_json = urllib.request.Request(
        api.url + "/v1/events/delete", data=b"{", method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(not_json, timeout=10)
    assert caught.value.code == 400
    assert caught.value.headers["X-RateLimit-Remaining"] == "3"

    for remaining in ("2", "1", "0"):
        accepted = call(api, "DELETE", "/v1/events", ids_body("a", "b", "a"), token=token)
        assert accepted.status == 202, accepted.body
        assert accepted.headers["X-RateLimit-Remaining"] == remaining
        assert accepted.headers["X-RateLimit-Reset"] == reset
        assert accepted.body["status_url"] == f"/v1/deletions/{accepted.body['deletion_id']}"
    refused = call(api, "POST", "/v1/events/delete", range_body(0, 1), token=token)
    assert refused.status == 429
    assert (refused.headers["X-RateLimit-Limit"], refused.headers["X-RateLimit-Remaining"]) == (
        "3", "0",
    )  # fmt: skip
    assert refused.headers["X-RateLimit-Reset"] == reset
    retry_after = int(refused.headers["Retry-After"])
    assert abs(datetime.now(UTC).timestamp() + retry_after - int(reset)) < 5
    assert "3 delete requests of this UTC day" in refused.body["error"]
    # Another model keeps its own quota.
    unknown_model = {"project_id": "shop", "model_id": "nope", "event_ids": ["a"]}
    other = call(api, "POST", "/v1/events/delete", unknown_model, token=token)
    assert (other.status, other.headers["X-RateLimit-Remaining"]) == (404, "3")


def test_the_daily_limit_holds_across_two_api_processes(
    settings: Settings, start_api: StartApi
) -> None:
    limited = settings.with_overrides(delete_requests_per_day=3)
    first, second = start_api(limited), start_api(limited)
    register(settings)
    token = token_for(first, "shop")
    statuses = [
        call(api, "POST", "/v1/events/delete", ids_body("a"), token=token).status
        for api in (first, second, first)
    ]
    assert statuses == [202, 202, 202]
    for api in (second, first):
        refused = call(api, "POST", "/v1/events/delete", ids_body("a"), token=token)
        assert refused.status == 429
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert int(refused.headers["Retry-After"]) > 0


def test_an_unknown_deletion_is_404_and_another_projects_is_403(
    settings: Settings, start_api: StartApi
) -> None:
    api = start_api()
    register(settings)
    shop, bank = token_for(api, "shop"), token_for(api, "bank")
    accepted = call(api, "POST", "/v1/events/delete", ids_body("a"), token=shop)
    assert call(api, "GET", accepted.body["status_url"], token=bank).status == 403
    missing = call(api, "GET", "/v1/deletions/nope", token=shop)
    assert missing.status == 404
    assert 'no deletion "nope"' in missing.body["error"]


# --- publishing over HTTP, slices, metrics -----------------------------------------------------


def test_publishing_over_http_keeps_the_valid_rows_and_slices_page_through_them(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    api, token = serving_shop(settings, start_worker, start_api)
    events = rows(60, 3)
    bad = [{"event_id": "bad-ts", "event_timestamp": -5, "event": {"age": 1}},
           {"event_id": "bad-event", "event": [1, 2]}]  # fmt: skip
    inserted = call(api, "POST", "/v1/events", {"project_id": "shop", "model_id": "churn",
                    "events": events[:30] + bad + events[30:]}, token=token)  # fmt: skip
    assert inserted.status == 207
    assert inserted.body["accepted"] == 60
    assert [e["index"] for e in inserted.body["errors"]] == [30, 31]
    assert "non-negative integer" in inserted.body["errors"][0]["error"]
    assert inserted.body["event_ids"] == [e["event_id"] for e in events]
    no_id = call(api, "POST", "/v1/events", {"project_id": "shop", "model_id": "churn",
                 "events": [{"event_timestamp": HOUR0 + 5, "event": {"age": 9}}]},
                 token=token)  # fmt: skip
    assert no_id.status == 200
    (generated,) = no_id.body["event_ids"]
    labels = [{"event_id": e["event_id"], "event": {"churned": 1, "age": 99}} for e in events[:10]]
    updated = call(api, "PATCH", "/v1/events", {"project_id": "shop", "model_id": "churn",
                   "events": [*labels, {"event": {"churned": 0}}]}, token=token)  # fmt: skip
    assert updated.status == 207
    assert updated.body["accepted"] == 10
    assert updated.body["dropped_fields"] == {"age": 10}
    assert "an update needs 'event_id'" in updated.body["errors"][0]["error"]
    wait_for_lag_zero(settings)

    # JSON pages of 7 across the four partitions: every event exactly once.
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = (f"/v1/events?project_id=shop&model_id=churn&start_time={HOUR0}"
                 f"&end_time={HOUR0 + 3 * HOUR_MS}&limit=7")  # fmt: skip
        page = call(api, "GET", query + (f"&cursor={cursor}" if cursor else ""), token=token)
        assert page.status == 200, page.body
        assert len(page.body["rows"]) <= 7
        seen.extend(page.body["rows"])
        cursor = page.body["next_cursor"]
        if cursor is None:
            break
    ids = [row["__event_id"] for row in seen]
    assert sorted(ids) == sorted([e["event_id"] for e in events] + [generated])
    by_id = {row["__event_id"]: row for row in seen}
    assert by_id["e-0003"] == {"__event_id": "e-0003", "__event_timestamp": HOUR0 + 3,
                               "age": 23, "plan": "pro", "score": 0.3, "churned": 1}  # fmt: skip
    assert by_id["e-0013"]["churned"] is None

    # CSV: a header, then rows; the next page's cursor in a header.
    csv_page = call(api, "GET", f"/v1/events?project_id=shop&model_id=churn&start_time={HOUR0}"
                    f"&end_time={HOUR0 + HOUR_MS}&format=csv&limit=5", token=token)  # fmt: skip
    assert csv_page.status == 200
    assert csv_page.headers["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(csv_page.raw.decode())))
    assert len(table) == 5
    assert list(table[0])[:2] == ["__event_id", "__event_timestamp"]
    assert "X-Next-Cursor" in csv_page.headers

    # By ids (and a time range): found ones only, in partition order.
    wanted = "&".join(f"event_id={i}" for i in ("e-0001", "e-0002", "missing", "e-0004"))
    by_ids = call(api, "GET", f"/v1/events?project_id=shop&model_id=churn&{wanted}", token=token)
    assert sorted(r["__event_id"] for r in by_ids.body["rows"]) == ["e-0001", "e-0002", "e-0004"]
    in_hour = call(api, "GET", f"/v1/events?project_id=shop&model_id=churn&{wanted}"
                   f"&start_time={HOUR0 + HOUR_MS}&end_time={HOUR0 + 2 * HOUR_MS}",
                   token=token)  # fmt: skip
    assert sorted(r["__event_id"] for r in in_hour.body["rows"]) == ["e-0001", "e-0004"]
    paged = call(api, "GET", f"/v1/events?project_id=shop&model_id=churn&{wanted}&limit=2",
                 token=token)  # fmt: skip
    assert paged.body["next_cursor"] is not None

    # Metrics: the bins of the model, from Redis.
    wait_until(lambda: sum(b["counts"]["n"] for b in bins_in_redis(settings).values()) == 61,
               timeout_s=30, what="61 events in the bins")  # fmt: skip
    metrics = call(api, "GET", f"/v1/metrics?project_id=shop&model_id=churn&start={HOUR0}"
                   f"&end={HOUR0 + 3 * HOUR_MS}", token=token)  # fmt: skip
    assert metrics.status == 200
    assert [b["counts"]["n"] for b in metrics.body["bins"]] == [21, 20, 20]
    bad_range = call(api, "GET", "/v1/metrics?project_id=shop&model_id=churn&start=5&end=1",
                     token=token)  # fmt: skip
    assert (bad_range.status, bad_range.body["error"]) == (400, "start must be before end")


def test_a_body_over_the_limit_is_413(settings: Settings, start_api: StartApi) -> None:
    api = start_api(settings.with_overrides(api_max_body_bytes=10_000))
    register(settings)
    token = token_for(api, "shop")
    answer = call(api, "POST", "/v1/events", {"project_id": "shop", "model_id": "churn",
                  "events": rows(300, 1)}, token=token)  # fmt: skip
    assert answer.status == 413
    assert "larger than 10,000 bytes" in answer.body["error"]


# --- deletions end to end (the workers apply them) ----------------------------------------------


def test_deleting_by_ids_through_the_client_removes_them_from_slices(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    api, token = serving_shop(settings, start_worker, start_api)
    published(settings, api, token, rows(40, 2))
    with client_for(api, token) as client:
        status = client.delete_events("shop", "churn", ["e-0000", "e-0001", "e-0000", "none"],
                                      update_metrics=True)  # fmt: skip
        assert status["status"] == "done"
        assert status["deleted"] == 2
        assert status["kind"] == "ids"
        assert status["partitions_done"] == status["partitions"] >= 1
        left = client.get_events_slice("shop", "churn", HOUR0, HOUR0 + 2 * HOUR_MS, page_size=9)
        assert len(left) == 38
        assert not {"e-0000", "e-0001"} & {row["__event_id"] for row in left}
        wait_until(lambda: bin_counts(settings) == {0: 19, 1: 19}, timeout_s=30,
                   what="the deleted events retracted from the bins")  # fmt: skip
        with pytest.raises(ApiError, match="not both") as caught:
            client.delete_events("shop", "churn", ["a"], (hour(0), hour(1)))
        assert caught.value.status == 400


def test_a_range_deletion_in_batches_with_and_without_updating_the_bins(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    settings = settings.with_overrides(event_deletion_batch_size=7)
    api, token = serving_shop(settings, start_worker, start_api)
    published(settings, api, token, rows(90, 3))
    with client_for(api, token) as client:
        kept = client.delete_events("shop", "churn", time_range=(hour(0), hour(1)))
        assert (kept["status"], kept["deleted"], kept["kind"]) == ("done", 30, "range")
        assert kept["partitions_done"] == kept["partitions"] == settings.ingest_partitions
        retracted = client.delete_events(
            "shop", "churn", time_range={"start_time": hour(1), "end_time": hour(2)},
            update_metrics=True,
        )  # fmt: skip
        assert (retracted["status"], retracted["deleted"]) == ("done", 30)
        wait_until(lambda: bin_counts(settings) == {0: 30, 2: 30}, timeout_s=30,
                   what="hour 1 retracted, hour 0 kept")  # fmt: skip
        left = client.get_events_slice("shop", "churn", HOUR0, HOUR0 + 3 * HOUR_MS)
        assert {row["__event_timestamp"] // HOUR_MS - HOUR0 // HOUR_MS for row in left} == {2}


def test_a_range_deletion_waits_at_the_daily_cap(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    settings = settings.with_overrides(event_deletion_batch_size=5, deletion_daily_cap=12)
    api, token = serving_shop(settings, start_worker, start_api)
    published(settings, api, token, rows(40, 1))
    with client_for(api, token) as client:
        status = client.delete_events("shop", "churn", time_range=(hour(0), hour(1)))
        assert status["status"] == "waiting_for_daily_cap"
        wait_until(lambda: client.deletion_status(status["deletion_id"])["deleted"] == 12,
                   timeout_s=15, what="the cap's 12 events deleted")  # fmt: skip
        assert len(client.get_events_slice("shop", "churn", HOUR0, HOUR0 + HOUR_MS)) == 28


def test_the_cli_deletes_a_range_with_a_progress_bar(
    settings: Settings, start_worker: Any, start_api: StartApi, tmp_path: Path
) -> None:
    api, token = serving_shop(settings, start_worker, start_api)
    published(settings, api, token, rows(20, 2))
    env = {**api.settings.to_env(), "DRIFTLINE_API_URL": api.url, "DRIFTLINE_API_TOKEN": token}
    result = CliRunner().invoke(
        main, ["delete", "shop", "churn", "--start", hour(0), "--end", hour(1)], env=env
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("deletion ")
    assert result.output.rstrip().endswith("deleted 10 events")
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("e-0001\ne-0003\n")
    by_ids = CliRunner().invoke(main, ["delete", "shop", "churn", "--ids-file", str(ids_file)],
                                env=env)  # fmt: skip
    assert by_ids.exit_code == 0, by_ids.output
    assert by_ids.output.rstrip().endswith("deleted 2 events")
    refused = CliRunner().invoke(
        main, ["delete", "shop", "churn", "--start", "2026-11-22 00:30:00", "--end", hour(1)],
        env=env,
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "aligned to the hour" in refused.output
    assert "Traceback" not in refused.output
