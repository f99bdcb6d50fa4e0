"""Day and week bins (SPEC §3): sums of their hour bins' counters, on UTC days and ISO
weeks, whose metrics equal a batch recomputation over the period's events.

Periods are recomputed independently: events are grouped by their UTC date or ISO week
with ``datetime``, and the metrics compared with scikit-learn over the grouped events,
never with the hour bins.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    mean_absolute_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from driftline.state.baseline import profile_baseline
from driftline.state.bins import HOUR_MS, ContributionRules, Counters, add_into, bins_of
from driftline.state.events import StoredEvent
from driftline.state.metrics import bin_metrics
from driftline.state.periods import (
    Period,
    period_counters,
    period_end_ms,
    period_start_hour,
    with_hour_replaced,
)
from driftline.state.spec import ModelSpec
from tests.support.models import CHURN_MODEL, PRICE_MODEL

EXACT = 1e-12
START = datetime(2026, 11, 25, 17, tzinfo=UTC)  # a Wednesday: its weeks are cut on Monday
DAYS = 16
BINARY = CHURN_MODEL
REGRESSION = PRICE_MODEL
BASELINE_ROWS = [
    {"age": 18 + i % 60, "plan": ("free", "pro", "team")[i % 3], "score": (i % 100) / 100,
     "price": float(i % 50)}
    for i in range(600)
]  # fmt: skip

hours = st.integers(min_value=0, max_value=10**7)
counter_maps = st.dictionaries(
    st.sampled_from(["n", "labelled", "miss:age", "h:age:3", "tp", "fn"]),
    st.integers(1, 10**6),
    min_size=1,
)


def utc(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * 3600, UTC)


# --- period starts ---------------------------------------------------------------------


@given(hours)
def test_a_day_starts_at_midnight_utc(hour: int) -> None:
    start = period_start_hour(hour, Period.DAY)
    assert utc(start) == datetime.combine(utc(hour).date(), datetime.min.time(), UTC)


@given(hours)
def test_a_week_starts_on_monday_midnight_utc(hour: int) -> None:
    start = period_start_hour(hour, Period.WEEK)
    assert utc(start).isocalendar()[:2] == utc(hour).isocalendar()[:2]
    assert (utc(start).weekday(), utc(start).hour) == (0, 0)
    assert start <= hour < start + 168


@given(hours)
def test_an_hour_is_its_own_period(hour: int) -> None:
    assert period_start_hour(hour, Period.HOUR) == hour


def test_the_epoch_week_began_the_monday_before() -> None:
    assert utc(period_start_hour(0, Period.WEEK)) == datetime(1969, 12, 29, tzinfo=UTC)


@pytest.mark.parametrize(("period", "hours_long"), [(Period.HOUR, 1), (Period.DAY, 24),
                                                    (Period.WEEK, 168)])  # fmt: skip
def test_a_period_ends_its_length_after_its_start(period: Period, hours_long: int) -> None:
    assert period_end_ms(490_000, period) == (490_000 + hours_long) * HOUR_MS


# --- sums ------------------------------------------------------------------------------


@pytest.mark.parametrize("period", list(Period))
@given(st.dictionaries(hours, counter_maps, max_size=40))
def test_a_period_is_the_sum_of_its_hours(
    period: Period, hour_counters: dict[int, Counters]
) -> None:
    expected: dict[datetime | tuple[int, int], Counter[str]] = defaultdict(Counter)
    for hour, counters in hour_counters.items():
        expected[_calendar_key(utc(hour), period)].update(counters)
    found = period_counters(hour_counters, period)
    assert {_calendar_key(utc(start), period): Counter(c) for start, c in found.items()} == expected


def _calendar_key(moment: datetime, period: Period) -> datetime | tuple[int, int]:
    """Which period a moment falls in, as the calendar says: its hour, date or ISO week."""
    if period is Period.WEEK:
        iso = moment.isocalendar()
        return (iso.year, iso.week)
    if period is Period.DAY:
        return datetime.combine(moment.date(), datetime.min.time(), UTC)
    return moment


def test_hour_bins_come_back_as_copies() -> None:
    hour_counters = {7: {"n": 2}}
    found = period_counters(hour_counters, Period.HOUR)
    assert found == hour_counters
    found[7]["n"] = 5
    assert hour_counters == {7: {"n": 2}}


def test_never_an_average_of_averages() -> None:
    """One hour with a right answer, one with nine wrong ones: the day was right 1 in 10
    times, not (1 + 0) / 2."""
    day = period_start_hour(490_000, Period.DAY)
    hour_counters = {
        day + 3: {"n": 1, "labelled": 1, "perf_n": 1, "tp": 1},
        day + 4: {"n": 9, "labelled": 9, "perf_n": 9, "fp": 9},
    }
    summed = period_counters(hour_counters, Period.DAY)
    assert bin_metrics(BINARY, None, summed[day])["performance"]["accuracy"] == 0.1


# --- metrics of a period equal a batch recomputation over its events -------------------


def binary_events(seed: int) -> list[StoredEvent]:
    """Events over DAYS days from START, at random times, some labels and values missing.

    Scores sit in the middle of an AUC histogram cell, so scikit-learn ties the events the
    histogram ties, and AUC is exact."""
    rng = np.random.default_rng(seed)
    events = []
    for i in range(1500):
        ts = int(START.timestamp() * 1000) + int(rng.integers(0, DAYS * 24 * HOUR_MS))
        score = (int(rng.integers(0, 1000)) + 0.5) / 1000
        row: dict[str, Any] = {
            "age": None if rng.random() < 0.1 else int(rng.integers(10, 90)),
            "plan": str(rng.choice(["free", "pro", "team", "gold"])),
            "score": score,
        }
        if rng.random() < 0.7:
            row["churned"] = int(rng.random() < score)
        events.append(StoredEvent(f"e{i}", ts, row, ts + int(rng.integers(0, 5000)), i))
    return events


def regression_events(seed: int) -> list[StoredEvent]:
    rng = np.random.default_rng(seed)
    events = []
    for i in range(1000):
        ts = int(START.timestamp() * 1000) + int(rng.integers(0, DAYS * 24 * HOUR_MS))
        price = float(rng.normal(25, 10))
        row = {"age": int(rng.integers(10, 90)), "price": price,
               "paid": price + float(rng.normal(0, 3))}  # fmt: skip
        events.append(StoredEvent(f"e{i}", ts, row, ts, i))
    return events


def periods_of(
    spec: ModelSpec, events: Sequence[StoredEvent], period: Period
) -> tuple[dict[int, Counters], dict[Any, list[StoredEvent]], ContributionRules]:
    """The period bins from the hour bins, and the events grouped by the calendar."""
    rules = ContributionRules(spec, profile_baseline(spec, BASELINE_ROWS))
    hour_bins = bins_of({spec.key: rules}, ((spec.key, event) for event in events))
    by_hour = {hour: counters for (_, hour), counters in hour_bins.items()}
    grouped: dict[Any, list[StoredEvent]] = defaultdict(list)
    for event in events:
        grouped[_calendar_key(datetime.fromtimestamp(event.timestamp_ms / 1000, UTC), period)
                ].append(event)  # fmt: skip
    return period_counters(by_hour, period), grouped, rules


@pytest.mark.parametrize("period", [Period.DAY, Period.WEEK])
def test_period_counters_equal_one_bin_of_the_periods_events(period: Period) -> None:
    found, grouped, rules = periods_of(BINARY, binary_events(seed=11), period)
    assert len(found) == len(grouped) >= (3 if period is Period.WEEK else DAYS)
    for start, counters in found.items():
        batch: Counters = {}
        for event in grouped[_calendar_key(utc(start), period)]:
            add_into(batch, rules.of(event))
        assert counters == batch


@pytest.mark.parametrize("period", [Period.DAY, Period.WEEK])
def test_binary_metrics_of_a_period_equal_scikit_learn(period: Period) -> None:
    found, grouped, rules = periods_of(BINARY, binary_events(seed=3), period)
    for start, counters in found.items():
        events = grouped[_calendar_key(utc(start), period)]
        metrics = bin_metrics(BINARY, rules.baseline, counters)
        assert metrics["traffic"]["events"] == len(events)
        assert metrics["traffic"]["labelled"] == sum("churned" in e.columns for e in events)
        missing_age = sum(e.columns["age"] is None for e in events)
        assert metrics["integrity"]["age"]["missing"] == missing_age
        performance = metrics["performance"]
        for name, expected in scikit_learn_binary(events).items():
            assert performance[name] == pytest.approx(expected, abs=EXACT), (start, name)
        truth, scores = labelled_scores(events)
        assert performance["log_loss"] == pytest.approx(log_loss(truth, scores), rel=1e-9)


def labelled_scores(events: Sequence[StoredEvent]) -> tuple[list[int], list[float]]:
    labelled = [e.columns for e in events if "churned" in e.columns]
    return [row["churned"] for row in labelled], [row["score"] for row in labelled]


def scikit_learn_binary(events: Sequence[StoredEvent]) -> dict[str, float]:
    """The ratio metrics over the labelled events, as scikit-learn computes them."""
    truth, scores = labelled_scores(events)
    predicted = [int(score >= BINARY.threshold) for score in scores]
    return {
        "accuracy": accuracy_score(truth, predicted),
        "precision": precision_score(truth, predicted),
        "recall": recall_score(truth, predicted),
        "f1": f1_score(truth, predicted),
        "auc": roc_auc_score(truth, scores),
    }


@pytest.mark.parametrize("period", [Period.DAY, Period.WEEK])
def test_regression_metrics_of_a_period_equal_scikit_learn(period: Period) -> None:
    found, grouped, rules = periods_of(REGRESSION, regression_events(seed=5), period)
    for start, counters in found.items():
        rows = [e.columns for e in grouped[_calendar_key(utc(start), period)]]
        truth, predicted = [r["paid"] for r in rows], [r["price"] for r in rows]
        performance = bin_metrics(REGRESSION, rules.baseline, counters)["performance"]
        assert performance["mae"] == pytest.approx(mean_absolute_error(truth, predicted), rel=1e-9)
        rmse = root_mean_squared_error(truth, predicted)
        assert performance["rmse"] == pytest.approx(rmse, rel=1e-9)
        assert performance["r2"] == pytest.approx(r2_score(truth, predicted), rel=1e-9)


def test_the_first_week_holds_only_its_days_from_monday() -> None:
    """START is a Wednesday 17:00: its week began two days and 17 hours before it."""
    found, _, _ = periods_of(BINARY, binary_events(seed=1), Period.WEEK)
    first = min(found)
    assert utc(first) == START - timedelta(days=2, hours=17)


@given(
    changes=st.lists(
        st.tuples(
            st.integers(0, 400),  # an hour of a few weeks
            st.dictionaries(
                st.sampled_from(["n", "miss:age", "tp", "h:age:3"]),
                st.integers(-(2**70), 2**70),
                max_size=4,
            ),
        ),
        max_size=40,
    ),
    period=st.sampled_from([Period.DAY, Period.WEEK]),
)
def test_periods_kept_by_retracting_and_adding_hours_equal_summing_them_again(
    changes: list[tuple[int, dict[str, int]]], period: Period
) -> None:
    """Streaming equals batch: each hour's change applied to its period's running total
    (the evaluator's way) gives the sums of the hours as they end up."""
    hours: dict[int, dict[str, int]] = {}
    totals: dict[int, dict[str, int]] = {}
    for hour, counters in changes:
        start = period_start_hour(hour, period)
        totals[start] = with_hour_replaced(totals.get(start, {}), hours.get(hour, {}), counters)
        hours[hour] = counters
    batch = period_counters(hours, period)
    assert {start: total for start, total in totals.items() if total} == batch
