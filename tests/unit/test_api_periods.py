"""Day and week bins of ``GET /v1/metrics`` (issue 11): the ``bin`` parameter, the
periods a range selects (those whose start lies in it, as hours are selected), and a
period's counts as the sum of its hours' (its metrics are checked against scikit-learn
end to end, tests/e2e/test_period_metrics.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from driftline.api.periods import hours_of_periods, period_bins
from driftline.api.requests import MetricsQuery, RequestError, parse_metrics
from driftline.state.bins import HOUR_MS
from driftline.state.periods import Period
from driftline.state.registered import RegisteredModel
from driftline.state.spec import ModelSpec
from driftline.state.wording import shown

RANGE = [("project_id", "shop"), ("model_id", "churn"), ("start", "0"), ("end", "1")]
DAY_MS = 24 * HOUR_MS
# Monday 2026-11-23 00:00 UTC, and the Sunday midnight before it.
MONDAY = int(datetime(2026, 11, 23, tzinfo=UTC).timestamp() * 1000)
SUNDAY = MONDAY - DAY_MS
SPEC = ModelSpec.from_dict(
    {"project_id": "shop", "model_id": "churn", "inputs": ["age"], "outputs": ["score"],
     "targets": ["churned"], "task": "binary_classification"}
)  # fmt: skip


def test_bin_is_hour_unless_given() -> None:
    assert parse_metrics(RANGE) == MetricsQuery("shop", "churn", 0, 1, Period.HOUR)
    for name in ("hour", "day", "week"):
        assert parse_metrics([*RANGE, ("bin", name)]).period is Period(name)


@pytest.mark.parametrize("name", ["month", "Day", "", "24h"])
def test_an_unknown_bin_is_a_400_naming_the_allowed_ones(name: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_metrics([*RANGE, ("bin", name)])
    assert caught.value.status == 400
    assert "'bin' must be one of hour, day, week" in caught.value.message
    assert caught.value.message.endswith(f"got {shown(name)}")


def test_bin_given_twice_is_refused() -> None:
    with pytest.raises(RequestError, match="given twice"):
        parse_metrics([*RANGE, ("bin", "day"), ("bin", "week")])


def test_a_range_selects_the_periods_that_start_in_it_whole() -> None:
    # Aligned: exactly the days, each whole.
    assert hours_of_periods(SUNDAY, MONDAY + DAY_MS, Period.DAY) == (SUNDAY, MONDAY + DAY_MS)
    # A start inside a day leaves that day out; an end inside one keeps it, whole.
    assert hours_of_periods(SUNDAY + 1, MONDAY + 1, Period.DAY) == (MONDAY, MONDAY + DAY_MS)
    assert hours_of_periods(SUNDAY + 1, MONDAY, Period.DAY) is None
    # Weeks start on Monday: a range from Sunday holds the next Monday's week only.
    week = 7 * DAY_MS
    assert hours_of_periods(SUNDAY, MONDAY + 1, Period.WEEK) == (MONDAY, MONDAY + week)
    assert hours_of_periods(SUNDAY - 3 * DAY_MS, MONDAY, Period.WEEK) is None
    # Hours: the rule /v1/metrics always had.
    assert hours_of_periods(MONDAY + 1, MONDAY + 2 * HOUR_MS, Period.HOUR) == (
        MONDAY + HOUR_MS, MONDAY + 2 * HOUR_MS,
    )  # fmt: skip


def hour_bin(start_ms: int, counts: dict[str, int]) -> dict[str, Any]:
    return {"project_id": "shop", "model_id": "churn", "hour_start_ms": start_ms,
            "hour_end_ms": start_ms + HOUR_MS, "version": 1, "counts": counts}  # fmt: skip


def test_a_day_counts_the_sum_of_its_hours() -> None:
    big = 10**30  # counters are exact integers of any size
    hours = [
        hour_bin(SUNDAY + 23 * HOUR_MS, {"n": 2, "labelled": 1}),
        hour_bin(MONDAY, {"n": 3, "labelled": 3, "miss:age": big}),
        hour_bin(MONDAY + 5 * HOUR_MS, {"n": 4, "miss:age": big}),
    ]
    days = period_bins(RegisteredModel(SPEC), hours, Period.DAY)
    assert [(d["bin_start_ms"], d["bin_end_ms"], d["hour_bins"]) for d in days] == [
        (SUNDAY, MONDAY, 1), (MONDAY, MONDAY + DAY_MS, 2),
    ]  # fmt: skip
    assert days[1]["counts"] == {"n": 7, "labelled": 3, "miss:age": 2 * big}
    assert days[1]["metrics"]["traffic"]["events"] == 7
    assert days[1]["metrics"]["integrity"]["age"]["missing"] == 2 * big
    assert {d["bin"] for d in days} == {"day"}
    (week,) = period_bins(RegisteredModel(SPEC), hours[1:], Period.WEEK)
    assert (week["bin_start_ms"], week["counts"]["n"]) == (MONDAY, 7)
