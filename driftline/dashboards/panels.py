"""What both dashboards share: panel ids and sizes, and the dashboard's frame."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count
from typing import Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import common, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models.common import (
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
)


class SizedPanel(Protocol):
    """What every panel builder of the SDK has (each panel type its own class)."""

    def id(self, id_val: int) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...


PanelT = TypeVar("PanelT", bound=SizedPanel)

FULL_WIDTH = 24
HALF_WIDTH = 12
HEIGHT = 8


class PanelIds:
    """Numbers a dashboard's panels from 1: Grafana keys a panel's links and state by id,
    and each export must give the same ids."""

    def __init__(self) -> None:
        self._ids: Iterator[int] = count(1)

    def place(self, panel: PanelT, width: int = HALF_WIDTH) -> PanelT:
        """The panel with the next id and its size; the dashboard builder lays it out."""
        return panel.id(next(self._ids)).span(width).height(HEIGHT)

    def row(self, title: str) -> Row:
        """A row heading the panels placed after it, with the next id."""
        return Row(title).id(next(self._ids))


def dashboard_frame(title: str, uid: str, description: str, time_from: str) -> Dashboard:
    """A Driftline dashboard: tagged, in UTC (bins are UTC hours), refreshed each minute."""
    return (
        Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["driftline"])
        .timezone("utc")
        .time(time_from, "now")
        .refresh("1m")
        .editable()
    )


def series_panel() -> timeseries.Panel:
    """A time series panel with its legend below and a tooltip listing every series: the
    options set in full (an SDK panel without options reads back as invalid)."""
    return (
        timeseries.Panel()
        .legend(
            common.VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING)
        )
    )
