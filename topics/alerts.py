"""The alerts topic ``<prefix>.alerts``: every alert, whole, each time it changes; compacted.

Key: the alert's key (``state.alerts.Alert.key``, text). Value: the alert as
``Alert.to_dict`` writes it, its current state and its history of changes (SCHEMAS.md).
The evaluator writes it in the same Kafka transaction as its own state, so each change is
published exactly once; the notifier and the API's alert listing read it.

Each API process keeps an in-memory view of the topic (``Alerts``, like the rules'
``AlertRules``) and catches it up before every read, so a listing shows every change
published before it, whichever process serves it. The topic holds one record per (rule,
column, bin) once compacted: far fewer than the bins, so the whole of it fits in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from driftline.state.alerts import ALERT_RECORD, Alert
from driftline.state.bins import HOUR_MS
from driftline.state.names import model_key
from driftline.state.periods import Period
from driftline.state.tables import Codec
from driftline.topics.views import TopicView, decoded_records

# The topic's value: the alert as the evaluator keeps it (``state.alerts.ALERT_RECORD``).
ALERT: Codec[Alert] = ALERT_RECORD


class AlertStateFilter(StrEnum):
    """Which alerts a listing shows by their state: firing, resolved, or both."""

    OPEN = "open"
    RESOLVED = "resolved"
    ALL = "all"

    def admits(self, alert: Alert) -> bool:
        return self is AlertStateFilter.ALL or alert.open == (self is AlertStateFilter.OPEN)


@dataclass(frozen=True, slots=True)
class AlertSelection:
    """A model's alerts a listing shows: all of them unless a filter narrows them down.

    ``start_ms`` and ``end_ms`` bound the bin's start, ``[start_ms, end_ms)``, as
    ``/v1/metrics`` selects bins; either may be left open.
    """

    project_id: str
    model_id: str
    state: AlertStateFilter = AlertStateFilter.ALL
    rule_id: str | None = None
    bin: Period | None = None
    start_ms: int | None = None
    end_ms: int | None = None

    def selects(self, alert: Alert) -> bool:
        """Whether ``alert`` (one of the model's) passes every filter."""
        start_ms = alert.bin_start_hour * HOUR_MS
        return (
            self.state.admits(alert)
            and self.rule_id in (None, alert.rule_id)
            and self.bin in (None, alert.bin)
            and (self.start_ms is None or start_ms >= self.start_ms)
            and (self.end_ms is None or start_ms < self.end_ms)
        )


# Where an alert stands in a listing: (-bin start hour, rule id, column, key).
ListingPosition = tuple[int, str, str, str]


def listing_position(alert: Alert) -> ListingPosition:
    """Newest bin first, then by rule and column. The key breaks the one tie left (a rule
    whose bin size was replaced has alerts of both sizes starting at the same hour), so
    that a page can go on after a position, not an offset: alerts added meanwhile neither
    repeat nor skip an alert on the next page."""
    return (-alert.bin_start_hour, alert.rule_id, alert.column or "", alert.key)


class AlertIndex:
    """The newest record of every alert by key (pure): what the view has read so far."""

    def __init__(self) -> None:
        self._alerts: dict[str, Alert] = {}

    def apply(self, key: str, alert: Alert | None) -> None:
        if alert is None:
            self._alerts.pop(key, None)
        else:
            self._alerts[key] = alert

    def page(
        self, selection: AlertSelection, after: ListingPosition | None, limit: int
    ) -> tuple[list[Alert], ListingPosition | None]:
        """Up to ``limit`` selected alerts in listing order past ``after`` (None: from the
        first), and the position the next page goes on after (None: this is the last)."""
        prefix = model_key(selection.project_id, selection.model_id) + "/"
        found = sorted(
            (
                alert
                for key, alert in self._alerts.items()
                if key.startswith(prefix) and selection.selects(alert)
            ),
            key=listing_position,
        )
        if after is not None:
            found = [alert for alert in found if listing_position(alert) > after]
        page = found[:limit]
        more = len(found) > limit
        return page, listing_position(page[-1]) if more else None


class Alerts:
    """An in-memory view of the alerts topic, caught up before every read."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._index = AlertIndex()
        self._view = TopicView(
            bootstrap_servers, topic, decoded_records(ALERT, self._index.apply), "alerts"
        )
        self.catch_up()

    def page(
        self, selection: AlertSelection, after: ListingPosition | None, limit: int
    ) -> tuple[list[Alert], ListingPosition | None]:
        """``AlertIndex.page`` over every record published before the call."""
        self.catch_up()
        with self._view.lock:
            return self._index.page(selection, after, limit)

    def catch_up(self, timeout_s: float = 10.0) -> None:
        self._view.catch_up(timeout_s)

    def close(self) -> None:
        self._view.close()
