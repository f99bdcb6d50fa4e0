"""A loopback Redis server for the quick start and the tests.

If a server already answers at the configured URL it is used as it is. Otherwise Debian's
``redis-server`` is installed when missing (this machine class reaches Debian's packages
and runs as root) and started on loopback, writing its pid where ``stop`` finds it.

It keeps an append-only file synced every second, so a SIGKILL loses about a second of
writes, not the minute between snapshots; and whatever it loses, the worker and the API
rebuild from Kafka (SPEC §5).
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis

from driftline.stack.packages import ensure_command
from driftline.topics.waiting import wait_until


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def ensure_redis_server_binary() -> str:
    return ensure_command("redis-server", "redis-server")


@dataclass
class LocalRedis:
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "redis.pid"

    def start(self, timeout_s: float = 20.0) -> None:
        if redis_answers(self.url):
            return
        binary = ensure_redis_server_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--daemonize", "yes", "--pidfile", str(self.pid_file),
             "--dir", str(self.data_dir), "--logfile", str(self.data_dir / "redis.log"),
             "--save", "60 1", "--appendonly", "yes", "--appendfsync", "everysec"],
            check=True,
        )  # fmt: skip
        wait_until(lambda: redis_answers(self.url), timeout_s=timeout_s, what="redis-server")

    def kill(self) -> None:
        """SIGKILL: no shutdown save; clients see the connection refused."""
        os.kill(int(self.pid_file.read_text().strip()), signal.SIGKILL)
        wait_until(lambda: not redis_answers(self.url), timeout_s=10, what="redis killed")

    def stop(self) -> None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        else:
            wait_until(lambda: not redis_answers(self.url), timeout_s=10, what="redis exit")
        self.pid_file.unlink(missing_ok=True)
