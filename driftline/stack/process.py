"""A Driftline command run as a child process that answers HTTP once it is ready.

The worker and the REST API are started this way by the demo, the benchmarks and the
tests: real processes, so a test can SIGKILL one, and their logs go to a file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

from driftline.settings import Settings
from driftline.stack.kafka import port_answers
from driftline.topics.waiting import wait_until


class ServiceProcess:
    # Set by each kind of service.
    name = "service"
    command: tuple[str, ...] = ()
    port_variable = ""
    start_timeout_s = 60.0

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        raise NotImplementedError

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if port_answers(self.host, self.port):
            raise RuntimeError(
                f"port {self.port} is taken (another {self.name}?); stop it or set "
                f"{self.port_variable}"
            )
        env = {**os.environ, **self.settings.to_env()}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "driftline.cli", *self.command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(
            self.ready,
            timeout_s=self.start_timeout_s,
            what=f"{self.name} ready (log: {self.log_path})",
        )
        return self

    def ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"{self.url}/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit, no flush."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
