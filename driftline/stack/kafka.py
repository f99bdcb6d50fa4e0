"""An embedded single-node Apache Kafka (KRaft) broker, from Maven Central jars.

This machine class has Java and Maven but no Docker engine, so the project fetches the
broker's jars itself (a one-dependency pom, ``mvn dependency:copy-dependencies``), caches
them under the Driftline home, and runs ``kafka.Kafka`` with the machine's JVM. The same
code serves the quick start (fixed port, persistent data) and the tests (free port,
throwaway data directory).
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from driftline.stack.packages import ensure_command
from driftline.topics.waiting import wait_until

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.driftline</groupId>
  <artifactId>embedded-kafka</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka_version}</version>
    </dependency>
    <!-- Kafka 4 logs through SLF4J 2; log4j2 is the backend its own distribution ships. -->
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="STDOUT"/></Root>
  </Loggers>
</Configuration>
"""

# Settings a single-node cluster needs (replication factor 1 for internal topics) plus a
# test-friendly consumer group start: no initial rebalance delay.
_BASE_CONFIG: dict[str, str] = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "inter.broker.listener.name": "PLAINTEXT",
    "num.partitions": "1",
    "auto.create.topics.enable": "false",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
}


def kafka_libs(home: Path, version: str) -> Path:
    """Return the folder of the broker's jars, fetching them with Maven on first use."""
    root = home / f"kafka-{version}"
    libs = root / "libs"
    done = root / ".complete"
    if done.exists():
        return libs
    mvn = ensure_command("mvn", "maven")
    root.mkdir(parents=True, exist_ok=True)
    (root / "pom.xml").write_text(_POM.format(kafka_version=version))
    if libs.exists():
        shutil.rmtree(libs)
    subprocess.run(
        [
            mvn, "-q", "-B", "-f", str(root / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
        ],
        check=True,
    )  # fmt: skip
    (root / "log4j2.xml").write_text(_LOG4J2)
    done.write_text(version)
    return libs


# Where listening ports are drawn from: below the kernel's range for outgoing connections.
_LISTEN_PORTS_FROM = 10_000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_start() -> int:
    """The first port the kernel may give an outgoing connection (Linux: 32768)."""
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive free ports, outside the kernel's range for
    outgoing connections.

    A port from that range (what binding port 0 gives) is free only until a client
    socket takes it as its local port: a broker or Redis stopped for an outage test could
    then not listen on its port again ("Address already in use", seen in CI with other
    work running beside the tests). Below the range, only another server can take it.
    """
    stop = _ephemeral_start() - count
    if stop <= _LISTEN_PORTS_FROM:
        raise RuntimeError("the kernel's range for outgoing connections leaves no room below it")
    draw = random.SystemRandom()
    for _ in range(200):
        port = draw.randrange(_LISTEN_PORTS_FROM, stop)
        if all(_bindable(port + offset) for offset in range(count)):
            return port
    raise RuntimeError(f"found no {count} free consecutive ports on 127.0.0.1")


def free_port() -> int:
    return free_ports(1)


def free_broker_port() -> int:
    """A free port whose next port is free too: the broker listens on it, its controller on
    the next."""
    return free_ports(2)


def port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class LocalKafka:
    """One broker+controller process on 127.0.0.1, stopped by the pid it records."""

    home: Path
    data_dir: Path
    port: int
    version: str = "4.1.1"
    extra_config: Mapping[str, str] = field(default_factory=dict)
    heap: str = "768m"

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    def start(self, timeout_s: float = 60.0) -> None:
        if self.is_running():
            return
        libs = kafka_libs(self.home, self.version)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config_file = self._write_config()
        java = _java()
        classpath = f"{libs}/*"
        log_opt = f"-Dlog4j2.configurationFile={libs.parent / 'log4j2.xml'}"
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(
                [java, "-cp", classpath, log_opt, "kafka.tools.StorageTool", "format",
                 f"--cluster-id={cluster_id}", "-c", str(config_file)],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                [java, f"-Xmx{self.heap}", "-XX:+UseG1GC", "-cp", classpath, log_opt,
                 "kafka.Kafka", str(config_file)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        self.pid_file.write_text(str(process.pid))
        try:
            wait_until(
                lambda: process.poll() is not None or _broker_ready(self.bootstrap_servers),
                timeout_s=timeout_s,
                what=f"Kafka broker on port {self.port}",
            )
        except TimeoutError:
            self.stop()
            raise
        if process.poll() is not None:
            tail = self.log_file.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Kafka broker exited with {process.returncode}:\n{tail}")

    def is_running(self) -> bool:
        pid = self._pid()
        return pid is not None and _alive(pid) and port_answers("127.0.0.1", self.port)

    def stop(self, timeout_s: float = 30.0) -> None:
        pid = self._pid()
        if pid is None:
            return
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)
            try:
                wait_until(lambda: not _alive(pid), timeout_s=timeout_s, what="broker exit")
            except TimeoutError:
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def _pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _write_config(self) -> Path:
        config = dict(_BASE_CONFIG)
        controller_port = self.port + 1
        config.update(
            {
                "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{controller_port}",
                "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
                "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
                "log.dirs": str(self.data_dir / "logs"),
            }
        )
        config.update(self.extra_config)
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in config.items()))
        return path


def _java() -> str:
    return ensure_command("java", "openjdk-17-jre-headless")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _broker_ready(bootstrap_servers: str) -> bool:
    """The port answering is not enough: wait until the broker serves metadata."""
    from confluent_kafka.admin import AdminClient

    host, _, port = bootstrap_servers.rpartition(":")
    if not port_answers(host, int(port)):
        return False
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    try:
        metadata = admin.list_topics(timeout=2)
    except Exception:
        return False
    return bool(metadata.brokers)
