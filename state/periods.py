"""Day and week bins: sums of their hour bins' counters (SPEC §3).

Every metric is a formula over counters (``state.metrics``), so a day's or a week's
metrics are ``bin_metrics`` of the sum of its hours' counters: exact, as if the period
had been one bin, never an average of hourly averages (which would weigh a quiet hour
like a busy one). A period's start is an hour number (hours since the epoch), the same
key the hour bins use: a day starts at 00:00 UTC, a week on Monday 00:00 UTC (ISO 8601).
A period holds whichever of its hours have a bin; an hour without one adds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from driftline.state.bins import HOUR_MS, Counters, add_into


class Period(StrEnum):
    """A bin size, as rules and ``/v1/metrics?bin=`` name it."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"

    @property
    def hours(self) -> int:
        return _HOURS[self]


_HOURS = {Period.HOUR: 1, Period.DAY: 24, Period.WEEK: 168}
# The epoch, 1970-01-01, was a Thursday: the Monday before it began 3 days (72 h) earlier.
_EPOCH_AFTER_MONDAY_HOURS = 72


def period_start_hour(hour: int, period: Period) -> int:
    """The first hour (hours since the epoch) of the ``period`` holding ``hour``."""
    shift = _EPOCH_AFTER_MONDAY_HOURS if period is Period.WEEK else 0
    return hour - (hour + shift) % period.hours


def period_end_ms(start_hour: int, period: Period) -> int:
    """When the period starting at ``start_hour`` ends, in UTC milliseconds (exclusive)."""
    return (start_hour + period.hours) * HOUR_MS


def period_counters(
    hour_counters: Mapping[int, Mapping[str, int]], period: Period
) -> dict[int, Counters]:
    """``{period_start_hour: counters}``: each period's counters, the sum of its hours'.

    ``hour_counters`` maps an hour number to that hour bin's counters (as the bins stage
    sums them). ``Period.HOUR`` gives the hour bins back, copied. A period whose hours
    hold no counters is left out, as an empty hour bin is (a tombstone).
    """
    periods: dict[int, Counters] = {}
    for hour in sorted(hour_counters):
        add_into(periods.setdefault(period_start_hour(hour, period), {}), hour_counters[hour])
    return {start: counters for start, counters in periods.items() if counters}


# The periods kept as running sums of their hours (an hour is its own bin).
SUMMED_PERIODS = (Period.DAY, Period.WEEK)


def with_hour_replaced(
    total: Mapping[str, int], before: Mapping[str, int], after: Mapping[str, int]
) -> Counters:
    """A period's counters once one of its hours went from ``before`` to ``after``: the
    old contribution retracted, the new one added (every counter is an exact integer, so
    this equals summing the hours again)."""
    result = dict(total)
    add_into(result, before, -1)
    add_into(result, after)
    return result
