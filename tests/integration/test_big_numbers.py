"""Integers of any size travel exactly on every path (SPEC §3): Kafka, the stores, Redis,
the worker's and the API's HTTP, the client and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from typing import Any

import pytest

from driftline.client import Driftline
from driftline.settings import Settings
from driftline.state.bins import HOUR_MS
from driftline.topics.waiting import wait_until
from tests.support.api import StartApi, call, token_for
from tests.support.models import HOUR0
from tests.support.pipeline import wait_for_lag_zero

pytestmark = pytest.mark.integration

REGRESSION = {
    "project_id": "shop",
    "model_id": "price",
    "inputs": ["rooms", "serial"],
    "outputs": ["predicted"],
    "targets": ["price"],
    "metadata": ["ref"],
    "task": "regression",
    "column_types": {"rooms": "int", "serial": "int", "predicted": "float"},
}
BIG = 2**70 + 1


def test_big_integers_and_counters_past_64_bits_read_back_exactly(
    settings: Settings, start_worker: Any, start_api: StartApi
) -> None:
    worker = start_worker()
    api = start_api()
    token = token_for(api, "shop")
    rows = [
        {"event_id": f"h{i}", "timestamp": HOUR0 + i, "rooms": 3 + i % 4,
         "serial": BIG + i, "predicted": 400_000.0 + i * 1_000, "price": 350_000 + i * 900,
         "ref": -(2**66)}
        for i in range(40)
    ]  # fmt: skip
    reading = settings.with_overrides(api_url=api.url, api_token=token)
    with Driftline(reading) as client:
        client.register_model(REGRESSION)
        client.publish_events_batch("shop", "price", rows)
        wait_for_lag_zero(settings)

        stored = client.get_event("shop", "price", "h7")
        assert stored is not None
        assert stored["event"]["serial"] == BIG + 7
        assert type(stored["event"]["serial"]) is int
        assert stored["event"]["ref"] == -(2**66)

        def bins() -> list[dict[str, Any]]:
            return client.get_metrics("shop", "price", HOUR0, HOUR0 + HOUR_MS)

        wait_until(lambda: bins() and bins()[0]["counts"]["n"] == 40, timeout_s=30,
                   what="the bin of 40 events")  # fmt: skip
    (found,) = bins()
    fixed = 10**9  # the counters' fixed point
    errors = [(r["predicted"] - r["price"]) for r in rows]
    assert found["counts"]["sq_err"] == sum(round(e * fixed) ** 2 for e in errors)
    assert found["counts"]["sq_err"] > 2**63
    assert found["metrics"]["performance"]["mse"] == pytest.approx(
        sum(e * e for e in errors) / len(errors)
    )

    query = urllib.parse.urlencode(
        {"project_id": "shop", "model_id": "price", "start": HOUR0, "end": HOUR0 + HOUR_MS}
    )
    answer = call(api, "GET", f"/v1/metrics?{query}", token=token)
    assert answer.status == 200
    (over_http,) = json.loads(answer.raw)["bins"]  # the standard library reads them exactly
    assert over_http["counts"]["sq_err"] == found["counts"]["sq_err"]

    lookup = urllib.parse.urlencode({"project_id": "shop", "model_id": "price", "event_id": "h7"})
    sliced = call(api, "GET", f"/v1/events?{lookup}", token=token)
    assert sliced.status == 200, sliced.raw
    assert json.loads(sliced.raw)["rows"][0]["serial"] == BIG + 7  # exact in JSON text

    cli = subprocess.run(
        [sys.executable, "-m", "driftline.cli", "metrics", "shop/price",
         "--start", str(HOUR0), "--end", str(HOUR0 + HOUR_MS)],
        env={**os.environ, **reading.to_env()}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    (printed,) = json.loads(cli.stdout)
    assert printed["counts"]["sq_err"] == found["counts"]["sq_err"]
    assert worker.process.poll() is None
