"""Metrics and times through HTTP on the real broker and Redis (issue 9): a worker computes
the bins, an API process serves them.

- a performance metric whose denominator is zero is absent from ``GET /v1/metrics``, and
  the ones that are defined equal scikit-learn on the bin's rows;
- ``/v1/metrics`` returns the bins whose hour *starts* in ``[start, end)``;
- every route that takes a time reads epoch ms, ISO 8601 with a zone and
  ``YYYY-MM-DD HH:MM:SS`` (UTC) alike, and refuses times before 1970 with a 400 (a
  delete without using a rate-limit slot).
"""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sklearn.metrics import roc_auc_score

from driftline.settings import Settings
from driftline.stack.api import ApiProcess
from driftline.state.bins import HOUR_MS
from driftline.topics.waiting import wait_until
from tests.support.api import (
    StartApi,
    bin_counts,
    call,
    client_for,
    hour,
    published,
    rows,
    serving_shop,
)
from tests.support.hourly_bins import bins_in_redis
from tests.support.models import HOUR0
from tests.support.sklearn_metrics import expected_performance

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def iso(millis: int, zone: timezone = UTC) -> str:
    """ISO 8601 with its zone, to the millisecond."""
    moment = datetime.fromtimestamp(millis / 1000, UTC).astimezone(zone)
    return moment.isoformat(timespec="milliseconds")


def metrics_query(api: ApiProcess, token: str, start: object, end: object) -> Any:
    query = urllib.parse.urlencode(
        {"project_id": "shop", "model_id": "churn", "start": start, "end": end}
    )
    return call(api, "GET", f"/v1/metrics?{query}", token=token)


def hours_of(answer: Any) -> list[int]:
    assert answer.status == 200, answer.body
    return [b["hour_start_ms"] // HOUR_MS - HOUR0 // HOUR_MS for b in answer.body["bins"]]


def labelled_rows(hour_number: int, scores: list[float], labels: list[int]) -> list[dict[str, Any]]:
    return [
        {"event_id": f"h{hour_number}-{i}", "event_timestamp": HOUR0 + hour_number * HOUR_MS + i,
         "event": {"age": 30 + i, "plan": "pro", "score": score, "churned": label}}
        for i, (score, label) in enumerate(zip(scores, labels, strict=True))
    ]  # fmt: skip


# Hour 0: only positive labels (no FPR, no AUC). Hour 1: only negatives, every score below
# the threshold: all true negatives (no precision, recall, F1 or AUC). Hour 2: both labels
# and both predictions: every metric is defined.
SCORES = {
    0: [i / 12 for i in range(12)],
    1: [0.05 * i for i in range(10)],
    2: [0.1, 0.4, 0.6, 0.9, 0.3, 0.7, 0.55, 0.2],
}
LABELS = {0: [1] * 12, 1: [0] * 10, 2: [0, 0, 1, 1, 1, 0, 1, 0]}
ABSENT = {0: {"false_positive_rate", "auc"}, 1: {"precision", "recall", "f1", "auc"}, 2: set()}
EVERY = {"accuracy", "precision", "recall", "f1", "false_positive_rate", "auc", "log_loss"}


def test_metrics_without_a_denominator_are_absent_and_the_rest_match_sklearn(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    api, token = serving_shop(settings, start_worker, start_api)
    events = [e for h in SCORES for e in labelled_rows(h, SCORES[h], LABELS[h])]
    published(settings, api, token, events)
    wait_until(lambda: all(b["counts"].get("perf_n") for b in bins_in_redis(settings).values()),
               timeout_s=30, what="the labelled bins")  # fmt: skip

    answer = metrics_query(api, token, HOUR0, HOUR0 + 3 * HOUR_MS)
    assert hours_of(answer) == [0, 1, 2]
    for number, found in enumerate(answer.body["bins"]):
        performance = found["metrics"]["performance"]
        assert set(performance) == EVERY - ABSENT[number], number
        for name, value in expected_performance(SCORES[number], LABELS[number]).items():
            assert performance[name] == pytest.approx(value, rel=1e-9, abs=1e-9), (number, name)
    assert answer.body["bins"][1]["metrics"]["performance"]["false_positive_rate"] == 0.0
    assert "false_positive_rate" not in answer.body["bins"][0]["metrics"]["performance"]

    # One negative label in hour 0: its FPR now has a denominator and appears.
    patched = call(api, "PATCH", "/v1/events", {"project_id": "shop", "model_id": "churn",
                   "events": [{"event_id": "h0-11", "event": {"churned": 0}}]},
                   token=token)  # fmt: skip
    assert patched.status == 200, patched.body
    wait_until(
        lambda: "false_positive_rate"
        in metrics_query(api, token, HOUR0, HOUR0 + HOUR_MS).body["bins"][0]["metrics"][
            "performance"
        ],
        timeout_s=30, what="hour 0 re-emitted with a labelled negative",
    )  # fmt: skip
    hour0 = metrics_query(api, token, HOUR0, HOUR0 + HOUR_MS).body["bins"][0]
    relabelled = [*LABELS[0][:11], 0]
    auc = roc_auc_score(relabelled, SCORES[0])  # every score in its own histogram cell
    assert hour0["metrics"]["performance"] == pytest.approx(
        expected_performance(SCORES[0], relabelled) | {"auc": auc}, rel=1e-9, abs=1e-9
    )


def test_metrics_are_the_bins_whose_hour_starts_in_the_range_in_any_time_form(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    api, token = serving_shop(settings, start_worker, start_api)
    published(settings, api, token, rows(30, 3))
    end = HOUR0 + 3 * HOUR_MS
    plus_one = timezone(timedelta(hours=1))

    # A start just after an hour begins excludes that hour: its bin starts before start.
    assert hours_of(metrics_query(api, token, HOUR0 + 1, end)) == [1, 2]
    assert hours_of(metrics_query(api, token, iso(HOUR0 + 1), end)) == [1, 2]
    assert hours_of(metrics_query(api, token, HOUR0, end)) == [0, 1, 2]
    assert hours_of(metrics_query(api, token, HOUR0 - 1, HOUR0 + HOUR_MS + 1)) == [0, 1]
    assert hours_of(metrics_query(api, token, HOUR0 + 1, HOUR0 + HOUR_MS)) == []
    # The three forms name the same instants.
    for start_form, end_form in [
        (hour(1), iso(end, plus_one)),
        (iso(HOUR0 + HOUR_MS).replace("+00:00", "Z"), str(end)),
        (iso(HOUR0 + HOUR_MS, plus_one), hour(3)),
    ]:
        assert hours_of(metrics_query(api, token, start_form, end_form)) == [1, 2], start_form

    # Slices take the same forms.
    for start_form in (hour(1), iso(HOUR0 + HOUR_MS, plus_one), str(HOUR0 + HOUR_MS)):
        query = urllib.parse.urlencode({"project_id": "shop", "model_id": "churn",
                                        "start_time": start_form, "end_time": hour(2)})  # fmt: skip
        sliced = call(api, "GET", f"/v1/events?{query}", token=token)
        assert sliced.status == 200, sliced.body
        assert {r["__event_timestamp"] // HOUR_MS for r in sliced.body["rows"]} == {
            HOUR0 // HOUR_MS + 1
        }, start_form
        assert len(sliced.body["rows"]) == 10

    # Before 1970: a 400 that says so, on both routes.
    before = metrics_query(api, token, "1969-12-31 23:00:00", end)
    assert before.status == 400
    assert "before 1970" in before.body["error"]
    assert metrics_query(api, token, "-3600000", end).status == 400
    query = urllib.parse.urlencode(
        {"project_id": "shop", "model_id": "churn", "start_time": "1969-12-31T23:00:00Z",
         "end_time": hour(1)}
    )  # fmt: skip
    refused = call(api, "GET", f"/v1/events?{query}", token=token)
    assert refused.status == 400
    assert "before 1970" in refused.body["error"]


def test_a_delete_takes_every_time_form_and_refuses_1970_without_a_slot(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    settings = settings.with_overrides(delete_requests_per_day=5)
    api, token = serving_shop(settings, start_worker, start_api)
    published(settings, api, token, rows(40, 4))

    def delete(start: object, end: object) -> Any:
        return call(api, "POST", "/v1/events/delete", {"project_id": "shop", "model_id": "churn",
                    "time_range": {"start_time": start, "end_time": end},
                    "update_metrics": True}, token=token)  # fmt: skip

    refusals = [
        (("1969-12-31 23:00:00", hour(0)), "before 1970"),
        (("1969-12-31T23:00:00Z", HOUR0), "before 1970"),
        ((-HOUR_MS, HOUR0), "before 1970"),
        # On the hour in India is half past in UTC, and bins are UTC hours.
        ((hour(0).replace(" ", "T") + "+05:30", hour(1)), "aligned to the hour"),
        ((HOUR0 + 1, hour(1)), "aligned to the hour"),
        ((iso(HOUR0).replace("+00:00", ""), hour(1)), "has no time zone"),
    ]
    for (start, end), problem in refusals:
        answer = delete(start, end)
        assert answer.status == 400, (start, answer.body)
        assert problem in answer.body["error"], start
        assert answer.headers["X-RateLimit-Remaining"] == "5", start  # no slot used

    with client_for(api, token) as client:
        # ISO with Z to epoch ms as a JSON integer; then an offset to the UTC form.
        first = delete(iso(HOUR0).replace("+00:00", "Z"), HOUR0 + HOUR_MS)
        assert first.status == 202, first.body
        assert first.headers["X-RateLimit-Remaining"] == "4"
        assert client.wait_for_deletion(first.body["deletion_id"], timeout_s=60)["deleted"] == 10
        second = delete(iso(HOUR0 + HOUR_MS, timezone(timedelta(hours=-3))), hour(2))
        assert second.status == 202, second.body
        assert client.wait_for_deletion(second.body["deletion_id"], timeout_s=60)["deleted"] == 10
        third = delete(str(HOUR0 + 2 * HOUR_MS), hour(3))  # ms as text
        assert third.status == 202, third.body
        assert client.wait_for_deletion(third.body["deletion_id"], timeout_s=60)["deleted"] == 10
        # The client's aware datetimes go out as ISO 8601 and name the same hour.
        as_datetimes = (
            datetime.fromtimestamp((HOUR0 + 3 * HOUR_MS) / 1000, UTC).astimezone(
                timezone(timedelta(hours=2))
            ),
            datetime.fromtimestamp((HOUR0 + 4 * HOUR_MS) / 1000, UTC),
        )
        done = client.delete_events("shop", "churn", time_range=as_datetimes, update_metrics=True)
        assert done["deleted"] == 10
    wait_until(lambda: bin_counts(settings) == {}, timeout_s=30,
               what="every hour retracted")  # fmt: skip
