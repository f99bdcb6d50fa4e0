"""`driftline api` as a child process: used by the demo and the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from driftline.settings import Settings
from driftline.stack.kafka import port_answers
from driftline.stack.waiting import wait_until


class ApiProcess:
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def start(self, timeout_s: float = 60) -> ApiProcess:
        if port_answers(self.settings.api_host, self.settings.api_port):
            raise RuntimeError(
                f"port {self.settings.api_port} is taken (another API?); stop it or set "
                "DRIFTLINE_API_PORT"
            )
        env = {**os.environ, **self.settings.to_env()}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "driftline.cli", "api"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.ready, timeout_s=timeout_s, what=f"API ready (log: {self.log_path})")
        return self

    def ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"API exited with {self.process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{self.url}/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
