"""The demo's PNGs (matplotlib, no display needed): traffic, drift and performance per
hour, the deleted hours shaded, every alert marked where it fired and by what resolved it.

Each panel is drawn by one function onto given axes: the overview stacks the three, and
each is also written alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, MultipleLocator

from driftline.demo.series import AlertMark, Plotted
from driftline.state.bins import HOUR_MS

_DAY_MS = 24 * HOUR_MS
Panel = Callable[[Axes, Plotted], None]
# How each way an alert ended is marked: matplotlib marker, colour, legend text.
_MARKS = {
    "deletion": ("v", "tab:red", "alert, at the value it fired with;\nresolved by the deletion"),
    "re-emission": (
        "o",
        "tab:orange",
        "alert, at the value it fired with;\nresolved by later data",
    ),
    None: ("X", "black", "alert, at the value it fired with;\nstill open"),
}


def write_plots(plotted: Plotted, out_dir: Path) -> list[Path]:
    """The overview and one PNG per panel in ``out_dir``; their paths."""
    panels: dict[str, Panel] = {"traffic": traffic, "drift": drift, "performance": performance}
    written = [_save(plotted, list(panels.values()), out_dir / "overview.png")]
    written += [_save(plotted, [panel], out_dir / f"{name}.png") for name, panel in panels.items()]
    return written


def _save(plotted: Plotted, panels: Sequence[Panel], path: Path) -> Path:
    figure, axes = plt.subplots(len(panels), 1, sharex=True, squeeze=False,
                                figsize=(13, 2.9 * len(panels) + 0.6))  # fmt: skip
    for panel, ax in zip(panels, axes[:, 0], strict=True):
        panel(ax, plotted)
        _deleted_span(ax, plotted)
        ax.grid(alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    last = axes[-1, 0]
    last.xaxis.set_major_locator(MultipleLocator(max(1, len(plotted.hour_ms) // 8) / 24))
    last.xaxis.set_major_formatter(FuncFormatter(_hour_label))
    last.set_xlabel("hour bin (UTC)")
    figure.suptitle(f"Driftline demo: {len(plotted.hour_ms)} hours of a tumour classifier")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def traffic(ax: Axes, plotted: Plotted) -> None:
    hours = _middles(plotted.hour_ms)
    width = 1 / 24 * 0.9
    deleted = [
        streamed if final is None else 0
        for final, streamed in zip(plotted.final.events, plotted.streamed.events, strict=True)
    ]
    ax.bar(hours, _zeros(plotted.final.events), width, color="tab:blue", label="events")
    ax.bar(hours, _zeros(plotted.final.labelled), width * 0.5, color="tab:green",
           label="with their label")  # fmt: skip
    ax.bar(hours, _zeros(deleted), width, color="none", edgecolor="tab:red", hatch="//",
           label="events deleted")  # fmt: skip
    ax.set_ylabel("events per hour")
    ax.set_title("Traffic", loc="left", fontsize=10)


def drift(ax: Axes, plotted: Plotted) -> None:
    column = plotted.drift_column
    _line_with_deleted(ax, plotted, plotted.final.psi, plotted.streamed.psi, f"PSI({column})")
    ax.axhline(plotted.psi_critical, color="tab:red", linestyle=":", label="critical")
    _alert_marks(ax, plotted, [a for a in plotted.alerts if a.column == column])
    ax.set_yscale("log")  # both the hours' noise (~0.1) and the incident (~2) show
    ax.set_ylabel("PSI vs baseline")
    ax.set_title(f"Drift of {column}", loc="left", fontsize=10)


def performance(ax: Axes, plotted: Plotted) -> None:
    _line_with_deleted(ax, plotted, plotted.final.accuracy, plotted.streamed.accuracy,
                       "accuracy")  # fmt: skip
    ax.axhline(plotted.accuracy_critical, color="tab:red", linestyle=":", label="critical")
    _alert_marks(ax, plotted, [a for a in plotted.alerts if a.column is None])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy (final labels)")
    ax.set_title("Performance", loc="left", fontsize=10)


def _line_with_deleted(
    ax: Axes,
    plotted: Plotted,
    final: list[float | None],
    streamed: list[float | None],
    label: str,
) -> None:
    """The final values as a line; the deleted hours' values before the deletion dashed."""
    hours = _middles(plotted.hour_ms)
    ax.plot(hours, _gaps(final), marker=".", color="tab:blue", label=label)
    gone = [s if f is None else None for f, s in zip(final, streamed, strict=True)]
    ax.plot(hours, _gaps(gone), marker=".", linestyle="--", color="tab:red",
            label=f"{label} of the deleted hours, before")  # fmt: skip


def _alert_marks(ax: Axes, plotted: Plotted, alerts: Sequence[AlertMark]) -> None:
    for ended, (marker, colour, label) in _MARKS.items():
        chosen = [a for a in alerts if a.resolved_by == ended]
        if chosen:
            ax.scatter(_middles([a.bin_start_ms for a in chosen]),
                       [a.fired_value for a in chosen], marker=marker, s=60, color=colour,
                       zorder=3, label=label)  # fmt: skip


def _deleted_span(ax: Axes, plotted: Plotted) -> None:
    start, end = (ms / _DAY_MS for ms in plotted.deleted_ms)
    ax.axvspan(start, end, color="tab:red", alpha=0.08, label="deleted (update_metrics)")


def _middles(hour_ms: Sequence[int]) -> list[float]:
    """The middle of each hour bin on the x axis: days since 1970 (matplotlib's dates)."""
    return [(ms + HOUR_MS / 2) / _DAY_MS for ms in hour_ms]


def _hour_label(days: float, _position: object) -> str:
    return datetime.fromtimestamp(round(days * _DAY_MS / 1000), UTC).strftime("%a %H:%M")


def _zeros(values: Sequence[int | None]) -> list[int]:
    return [value or 0 for value in values]


def _gaps(values: Sequence[float | None]) -> list[float]:
    """None as NaN: matplotlib leaves a gap in the line there."""
    return [float("nan") if value is None else value for value in values]
