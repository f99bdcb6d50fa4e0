"""The demo (`driftline demo`) as a smoke test, at a third of its size, on a worker and an
API of the test's own: its PNGs are written and are PNGs, the values it says it plotted
are the bins the API serves (read here through the client, apart from the demo's code),
and every alert it raised fired and resolved at its webhook."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import orjson
import pytest

from driftline.demo.run import PLOTTED_JSON, play
from driftline.demo.story import Shape
from driftline.settings import Settings
from driftline.state.bins import HOUR_MS
from tests.support.api import StartApi, client_for, token_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's header chunk (IHDR, first after the signature)."""
    raw = path.read_bytes()
    assert raw[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert raw[12:16] == b"IHDR"
    width, height = struct.unpack(">II", raw[16:24])
    return width, height


def served(bin_: dict[str, Any] | None, *path: str) -> Any:
    found: Any = None if bin_ is None else bin_["metrics"]
    for step in path:
        found = None if found is None else found.get(step)
    return found


def test_the_demo_plots_the_bins_the_api_serves_and_its_alerts_fire_and_resolve(
    settings: Settings, start_worker: Any, start_api: StartApi, tmp_path: Path
) -> None:
    start_worker()
    api = start_api()
    out = tmp_path / "demo"
    with client_for(api, token_for(api, "demo")) as client:
        play(client, Shape(hours=16, events_per_hour=120), out)
        plotted = orjson.loads((out / PLOTTED_JSON).read_bytes())
        hours = plotted["hour_ms"]
        bins = client.get_metrics("demo", "tumours", hours[0], hours[-1] + HOUR_MS)
        alerts = client.get_alerts("demo", "tumours")

    for name in ("overview", "traffic", "drift", "performance"):
        width, height = png_size(out / f"{name}.png")
        assert (width > 500, height > 200) == (True, True), name

    by_hour = {found["hour_start_ms"]: found for found in bins}
    column = plotted["drift_column"]
    assert plotted["final"] == {
        "events": [served(by_hour.get(h), "traffic", "events") for h in hours],
        "labelled": [served(by_hour.get(h), "traffic", "labelled") for h in hours],
        "psi": [served(by_hour.get(h), "drift", column, "psi") for h in hours],
        "accuracy": [served(by_hour.get(h), "performance", "accuracy") for h in hours],
    }
    start, end = plotted["deleted_ms"]
    deleted = [i for i, h in enumerate(hours) if start <= h < end]
    assert deleted == [8, 9]
    assert [h for h in by_hour if start <= h < end] == []
    assert set(by_hour) == {h for h in hours if not start <= h < end}
    # Every event got its label; the deletion changed no other hour.
    assert all(plotted["final"]["labelled"][i] == 120 for i in range(16) if i not in deleted)
    for series, values in plotted["streamed"].items():
        kept = [v for i, v in enumerate(values) if i not in deleted]
        assert kept == [v for i, v in enumerate(plotted["final"][series]) if i not in deleted]
    assert all(plotted["streamed"]["psi"][i] > plotted["psi_critical"] for i in deleted)

    # Each rule fired on the miscalibrated hours, and every alert resolved; the webhook
    # took each change once.
    fired = {(alert["rule_id"], alert["bin_start_ms"]) for alert in alerts}
    assert {("radius-drift", hours[i]) for i in deleted} <= fired
    assert {("accuracy", hours[i]) for i in deleted} <= fired
    assert all(alert["rule_id"] == "accuracy" for alert in alerts
               if not start <= alert["bin_start_ms"] < end)  # fmt: skip
    for alert in alerts:
        changes = [change["change"] for change in alert["changes"]]
        assert (changes[0], changes[-1], alert["open"]) == ("fired", "resolved", False)
    change_ids = [f"{alert['key']}#{change['seq']}" for alert in alerts
                  for change in alert["changes"]]  # fmt: skip
    assert sorted(plotted["webhook"]) == sorted(change_ids)
    assert [(a["rule_id"], a["bin_start_ms"]) for a in plotted["alerts"]] == sorted(
        fired, key=lambda named: (named[1], named[0])
    )
