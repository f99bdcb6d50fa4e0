"""Day and week bins through HTTP, the client and the CLI on the real broker and Redis
(issue 11): labelled events over 30 hours that cross midnight UTC.

- each day bin's counts equal the sums of its hour bins' counts, and its performance
  metrics equal scikit-learn on that day's events (never averages of hourly metrics);
- the week bin (from Monday 00:00 UTC) likewise over every event;
- a ``bin`` that is no period is a 400 naming the allowed ones.
"""

from __future__ import annotations

import urllib.parse
from collections import Counter
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from driftline.cli import main
from driftline.settings import Settings
from driftline.stack.api import ApiProcess
from driftline.state.bins import HOUR_MS
from tests.support.api import StartApi, call, client_for, published, serving_shop
from tests.support.models import HOUR0
from tests.support.sklearn_metrics import expected_performance

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

DAY_MS = 24 * HOUR_MS
HOURS = 30
PER_HOUR = 6
# HOUR0 is Monday 16:00 UTC: its day and its week both start at Monday 00:00 UTC, and
# hours 8 to 29 fall on Tuesday.
MONDAY = HOUR0 - HOUR0 % DAY_MS
TUESDAY = MONDAY + DAY_MS


def labelled_rows() -> list[dict[str, Any]]:
    """Churn events with scores and labels that vary by hour (so a day's metrics differ
    from the mean of its hours')."""
    found = []
    for number in range(HOURS * PER_HOUR):
        hour, i = divmod(number, PER_HOUR)
        score = ((number * 37) % 97) / 97
        label = int((number * 11 + hour) % 5 < 2 + hour % 2)
        found.append({"event_id": f"p-{number:04d}",
                      "event_timestamp": HOUR0 + hour * HOUR_MS + i * 1000,
                      "event": {"age": 20 + number % 50, "plan": ["free", "pro"][number % 2],
                                "score": score, "churned": label}})  # fmt: skip
    return found


def metrics(api: ApiProcess, token: str, start: int, end: int, bin: str | None) -> Any:
    query = {"project_id": "shop", "model_id": "churn", "start": start, "end": end}
    if bin is not None:
        query["bin"] = bin
    return call(api, "GET", f"/v1/metrics?{urllib.parse.urlencode(query)}", token=token)


def summed_counts(hour_bins: list[dict[str, Any]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for hour_bin in hour_bins:
        total.update(hour_bin["counts"])
    return dict(total)


def check_period(period_bin: dict[str, Any], hour_bins: list[dict[str, Any]],
                 rows: list[dict[str, Any]]) -> None:  # fmt: skip
    """Counts: the sum of the hours'; performance: scikit-learn on the period's rows."""
    start, end = period_bin["bin_start_ms"], period_bin["bin_end_ms"]
    hours = [b for b in hour_bins if start <= b["hour_start_ms"] < end]
    assert period_bin["hour_bins"] == len(hours)
    assert period_bin["counts"] == summed_counts(hours)
    inside = [r["event"] for r in rows if start <= r["event_timestamp"] < end]
    scores, labels = [e["score"] for e in inside], [e["churned"] for e in inside]
    assert period_bin["metrics"]["traffic"]["events"] == len(inside)
    performance = period_bin["metrics"]["performance"]
    expected = expected_performance(scores, labels)
    assert set(performance) == {*expected, "auc"}
    for name, value in expected.items():
        assert performance[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
    assert performance["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-3)


def test_day_and_week_bins_are_sums_of_their_hours_and_match_sklearn(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    api, token = serving_shop(settings, start_worker, start_api)
    rows = labelled_rows()
    published(settings, api, token, rows)
    hourly = metrics(api, token, MONDAY, MONDAY + 7 * DAY_MS, None)
    assert hourly.status == 200, hourly.body
    hour_bins = hourly.body["bins"]
    assert len(hour_bins) == HOURS

    days = metrics(api, token, MONDAY, TUESDAY + DAY_MS, "day")
    assert days.status == 200, days.body
    assert [(d["bin"], d["bin_start_ms"], d["bin_end_ms"]) for d in days.body["bins"]] == [
        ("day", MONDAY, TUESDAY), ("day", TUESDAY, TUESDAY + DAY_MS),
    ]  # fmt: skip
    for day in days.body["bins"]:
        check_period(day, hour_bins, rows)
    assert [d["hour_bins"] for d in days.body["bins"]] == [8, 22]

    # A start inside Monday leaves Monday out; an end inside Tuesday keeps it, whole.
    later = metrics(api, token, MONDAY + 1, TUESDAY + 1, "day").body["bins"]
    assert later == days.body["bins"][1:]

    weeks = metrics(api, token, MONDAY, MONDAY + 7 * DAY_MS, "week")
    assert weeks.status == 200, weeks.body
    (week,) = weeks.body["bins"]
    assert (week["bin"], week["bin_start_ms"], week["bin_end_ms"]) == (
        "week", MONDAY, MONDAY + 7 * DAY_MS,
    )  # fmt: skip
    check_period(week, hour_bins, rows)

    # The client and the CLI ask for the same bins.
    with client_for(api, token) as client:
        assert (
            client.get_metrics("shop", "churn", MONDAY, TUESDAY + DAY_MS, bin="day")
            == (days.body["bins"])
        )
    env = {**api.settings.to_env(), "DRIFTLINE_API_URL": api.url, "DRIFTLINE_API_TOKEN": token}
    printed = CliRunner().invoke(main, ["metrics", "shop/churn", "--start", str(MONDAY),
                                        "--end", str(MONDAY + 7 * DAY_MS), "--bin", "week"],
                                 env=env)  # fmt: skip
    assert printed.exit_code == 0, printed.output
    assert orjson.loads(printed.output) == weeks.body["bins"]


def test_a_bin_that_is_no_period_is_a_400_naming_the_allowed_ones(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    api, token = serving_shop(settings, start_worker, start_api)
    for bin in ("month", "days", ""):
        answer = metrics(api, token, MONDAY, TUESDAY, bin)
        assert answer.status == 400, (bin, answer.body)
        assert "'bin' must be one of hour, day, week" in answer.body["error"], bin
