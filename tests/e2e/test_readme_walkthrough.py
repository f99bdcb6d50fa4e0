"""The README's walk-through for a service in another language, run as written: its
`sh walkthrough:<step>` blocks, in one bash, with only curl, kcat and jq, against a worker
and the API on the real broker and Redis. The output of each step is checked, and the
metrics it prints against scikit-learn."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from driftline.settings import Settings
from driftline.stack.api import ApiProcess
from tests.support.api import token_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"^```sh walkthrough:(?P<step>[a-z]+)\n(?P<code>.*?)^```$", re.M | re.S)
STEPS = ("setup", "register", "publish", "label", "wait", "metrics", "delete")
MARKER = "@@walkthrough-step "
HOUR_START_MS = 1_795_341_600_000  # 2026-11-22 10:00 UTC, the hour the README publishes into


def walkthrough_blocks(text: str) -> dict[str, str]:
    blocks = {match["step"]: match["code"] for match in BLOCK.finditer(text)}
    assert tuple(blocks) == STEPS, f"README walk-through steps {list(blocks)}, expected {STEPS}"
    return blocks


def run_steps(blocks: dict[str, str], env: dict[str, str]) -> dict[str, list[str]]:
    """Every block in one bash, as a reader pastes them; each step's output lines."""
    # A marker line before each step (after a newline: curl prints none after a body).
    script = "set -euo pipefail\n" + "".join(
        f"printf '\\n{MARKER}{step}\\n'\n{code}" for step, code in blocks.items()
    )
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    output: dict[str, list[str]] = {}
    step = ""
    for line in done.stdout.splitlines():
        if not line:
            continue
        if line.startswith(MARKER):
            step = line.removeprefix(MARKER)
            output[step] = []
        else:
            output[step].append(line)
    assert done.returncode == 0, (
        f"the walk-through failed in step {step!r} (exit {done.returncode}):\n"
        f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    return output


def only_json(lines: list[str]) -> Any:
    assert len(lines) == 1, lines
    return json.loads(lines[0])


def expected_performance() -> dict[str, float]:
    """The README's first 10 events, labelled: score (i % 10) / 10, label i % 2, at the
    spec's default threshold 0.5."""
    scores = [(i % 10) / 10 for i in range(10)]
    labels = [i % 2 for i in range(10)]
    predicted = [int(score >= 0.5) for score in scores]
    tn, fp, _, _ = confusion_matrix(labels, predicted).ravel()
    return {
        "false_positive_rate": fp / (fp + tn),
        "accuracy": accuracy_score(labels, predicted),
        "precision": precision_score(labels, predicted),
        "recall": recall_score(labels, predicted),
        "f1": f1_score(labels, predicted),
        "auc": roc_auc_score(labels, scores),
        "log_loss": log_loss(labels, scores),
    }


def test_the_readme_walkthrough_runs_with_curl_kcat_and_jq(
    settings: Settings, start_worker: Callable[..., Any], start_api: Callable[..., ApiProcess]
) -> None:
    for tool in ("bash", "curl", "kcat", "jq"):
        assert shutil.which(tool), f"{tool} is missing: `driftline stack prepare` installs it"
    start_worker(settings)
    api = start_api(settings)
    token = token_for(api, "shop")
    blocks = walkthrough_blocks(README.read_text())
    # Only what the README names: no Driftline settings beyond the topic prefix.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "DRIFTLINE_API_URL": api.url,
        "DRIFTLINE_API_TOKEN": token,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DRIFTLINE_TOPIC_PREFIX": settings.topic_prefix,
    }
    output = run_steps(blocks, env)

    assert output["setup"] == []
    registered = only_json(output["register"])
    assert (registered["model"]["project_id"], registered["model"]["model_id"]) == ("shop", "fraud")
    assert registered["warnings"] == []  # the baseline agrees with the declared types
    assert output["publish"] == []  # kcat says nothing when every message was delivered
    assert only_json(output["label"]) == {"accepted": 10, "errors": [], "dropped_fields": {}}
    assert output["wait"] == []
    metrics = only_json(output["metrics"])
    assert metrics["hour_start_ms"] == HOUR_START_MS
    assert (metrics["traffic"]["events"], metrics["traffic"]["labelled"]) == (20, 10)
    assert metrics["performance"] == pytest.approx(expected_performance(), abs=1e-9)
    status, rows = output["delete"]
    assert json.loads(status) == {"status": "done", "deleted": 2}
    assert json.loads(rows) == [{"__event_id": "tx-2", "is_fraud": 0}]
