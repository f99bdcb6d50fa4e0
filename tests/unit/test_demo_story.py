"""The demo's pure parts: its traffic, incident and label schedule (driftline.demo.story),
and what it plots from the API's bins and alerts (driftline.demo.series)."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise
from statistics import mean
from typing import Any

import pytest
from click.testing import CliRunner

from driftline.cli import main
from driftline.demo.series import alert_marks, counted, hourly_series, step_at, without_range
from driftline.demo.story import (
    LABEL_DELAY_WEIGHTS,
    Classifier,
    Shape,
    label_arrivals,
    traffic,
    train_classifier,
)
from driftline.state.bins import HOUR_MS

FIRST_HOUR_MS = 490_000 * HOUR_MS


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return train_classifier(seed=13)


def test_the_incident_is_an_eighth_of_the_hours_midway_and_the_stream_waits_for_labels() -> None:
    assert Shape(48).incident_hours == range(24, 30)
    assert Shape(16).incident_hours == range(8, 10)
    assert Shape(4).incident_hours == range(2, 3)
    assert Shape(48).steps == 48 + max(LABEL_DELAY_WEIGHTS)


def test_traffic_fills_each_hour_and_the_incident_inflates_the_sizes(
    classifier: Classifier,
) -> None:
    shape = Shape(hours=16, events_per_hour=50)
    events = traffic(classifier, shape, FIRST_HOUR_MS, seed=1)
    assert Counter(e.hour for e in events) == dict.fromkeys(range(16), 50)
    assert all(0 <= e.timestamp_ms - FIRST_HOUR_MS - e.hour * HOUR_MS < HOUR_MS for e in events)
    assert len({e.event_id for e in events}) == len(events)
    radius = {
        incident: mean(e.row["mean_radius"] for e in events
                       if (e.hour in shape.incident_hours) == incident)
        for incident in (True, False)
    }  # fmt: skip
    assert radius[True] > 1.3 * radius[False]
    assert all(e.published()["malignant"] is None for e in events)


def test_every_label_comes_back_once_one_to_eight_hours_late_and_mixed(
    classifier: Classifier,
) -> None:
    events = traffic(classifier, Shape(hours=12, events_per_hour=40), FIRST_HOUR_MS, seed=2)
    arrivals = label_arrivals(events, seed=3)
    returned = [(step, e) for step, arriving in arrivals.items() for e in arriving]
    assert sorted(e.event_id for _, e in returned) == sorted(e.event_id for e in events)
    assert {step - e.hour for step, e in returned} <= set(LABEL_DELAY_WEIGHTS)
    # Out of order: labels of an earlier hour come after a later hour's in some step.
    assert any(
        any(a.hour > b.hour for a, b in pairwise(arriving)) for arriving in arrivals.values()
    )


def bin_of(hour_ms: int, events: int, labelled: int, **metrics: Any) -> dict[str, Any]:
    traffic_ = {"events": events, "labelled": labelled}
    return {"hour_start_ms": hour_ms, "metrics": {"traffic": traffic_, **metrics}}


def test_the_series_leave_none_where_no_bin_or_no_metric_is_served() -> None:
    hours = [FIRST_HOUR_MS + i * HOUR_MS for i in range(3)]
    bins = [
        bin_of(hours[0], 10, 4, drift={"mean_radius": {"psi": 0.2}},
               performance={"accuracy": 0.75}),
        bin_of(hours[2], 5, 0, drift={"mean_radius": {"psi": 1.5}}),
    ]  # fmt: skip
    series = hourly_series(bins, hours, "mean_radius")
    assert series.events == [10, None, 5]
    assert series.labelled == [4, None, 0]
    assert series.psi == [0.2, None, 1.5]
    assert series.accuracy == [0.75, None, None]


def test_counts_follow_what_was_sent_and_a_deleted_range_takes_its_hours_away() -> None:
    hours = [FIRST_HOUR_MS + i * HOUR_MS for i in range(3)]
    events = traffic(train_classifier(13), Shape(hours=3, events_per_hour=2), hours[0], seed=4)
    counts = counted({}, hours, events, events[:3])
    assert counts == {hours[0]: (2, 2), hours[1]: (2, 1), hours[2]: (2, 0)}
    assert without_range(counts, (hours[1], hours[2])) == {hours[0]: (2, 2), hours[2]: (2, 0)}


def test_each_alert_is_placed_in_the_simulated_hours_it_fired_and_resolved_in() -> None:
    starts = [1_000, 2_000, 3_000, 4_000]

    def alert(rule_id: str, bin_start_ms: int, *changes: tuple[str, int]) -> dict[str, Any]:
        return {"rule_id": rule_id, "column": None, "bin_start_ms": bin_start_ms,
                "changes": [{"change": change, "value": 0.5, "at_ms": at_ms}
                            for change, at_ms in changes]}  # fmt: skip

    marks = alert_marks([
        alert("accuracy", 20, ("fired", 2_500), ("resolved", 5_000)),
        alert("accuracy", 10, ("fired", 1_500), ("resolved", 3_100)),
        alert("drift", 20, ("fired", 2_000)),
    ], starts, deletion_ms=4_500)  # fmt: skip
    assert [(m.bin_start_ms, m.rule_id) for m in marks] == [
        (10, "accuracy"), (20, "accuracy"), (20, "drift")
    ]  # fmt: skip
    assert [(m.fired_step, m.resolved_step, m.resolved_by) for m in marks] == [
        (0, 2, "re-emission"), (1, 3, "deletion"), (1, None, None)
    ]  # fmt: skip
    assert (step_at(500, starts), step_at(4_000, starts), step_at(9_000, starts)) == (0, 3, 3)


def test_without_the_demo_extra_the_command_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import driftline.demo

    monkeypatch.setattr(driftline.demo, "find_spec", lambda name: None)
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 1
    assert "needs scikit-learn and matplotlib: pip install 'driftline[demo]'" in result.output
