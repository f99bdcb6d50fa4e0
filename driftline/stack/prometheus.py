"""A Prometheus server of its own for the tests: Debian's ``prometheus`` scraping given
targets every second, so a test can ask real PromQL what the processes exposed.

The binary is installed when missing (``driftline stack prepare`` installs it too); the
server runs on a free loopback port with a generated configuration and its data in a
directory of the caller's, and ``query`` evaluates an instant query through the HTTP API.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from driftline.stack.kafka import free_port
from driftline.stack.packages import ensure_command
from driftline.topics.waiting import wait_until

# Every target scraped this often: a test sees a change within about two seconds.
SCRAPE_INTERVAL = "1s"


def scrape_config(targets: Sequence[str], interval: str = SCRAPE_INTERVAL) -> str:
    """The configuration (JSON, which is YAML) of one job scraping ``targets``
    (``host:port``) at ``/metrics``."""
    job = {"job_name": "driftline", "metrics_path": "/metrics",
           "static_configs": [{"targets": list(targets)}]}  # fmt: skip
    config = {"global": {"scrape_interval": interval, "evaluation_interval": interval},
              "scrape_configs": [job]}  # fmt: skip
    return json.dumps(config, indent=2)


class LocalPrometheus:
    """``start()``, ``ready``, ``query(promql)``, ``stop()``; one per test is cheap (~1 s)."""

    def __init__(self, data_dir: Path, targets: Sequence[str], port: int | None = None) -> None:
        self.data_dir = data_dir
        self.targets = list(targets)
        self.port = free_port() if port is None else port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "prometheus.log"

    def start(self, timeout_s: float = 30.0) -> LocalPrometheus:
        binary = ensure_command("prometheus", "prometheus")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "prometheus.yml"
        config.write_text(scrape_config(self.targets))
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [binary, f"--config.file={config}",
                 f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_until(lambda: self.ready, timeout_s=timeout_s, what=f"prometheus ({self.log_path})")
        return self

    @property
    def ready(self) -> bool:
        """Whether the server answers its readiness endpoint."""
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result of an instant query: one ``{"metric": labels, "value": [t, "v"]}``
        per series (a vector), ``[]`` when none matches."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(address, timeout=10) as answer:
            body = json.load(answer)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus refused {promql!r}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
