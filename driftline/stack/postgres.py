"""A loopback PostgreSQL server for the quick start and the tests (Grafana's datasource).

If a server already answers at the configured URL it is used as it is. Otherwise Debian's
``postgresql`` is installed when missing and a cluster of our own is created and started:
trust authentication for the superuser ``driftline``, listening on 127.0.0.1 only, its
unix socket in its own data directory (never the system's /var/run/postgresql), its log
in a file, and a database ``driftline``.

PostgreSQL refuses to run as root, and this machine class runs as root: then the cluster
belongs to the OS user ``postgres`` and every server command runs as that user through
``setpriv``, keeping one capability, to search directories (CAP_DAC_READ_SEARCH), so that
a data directory under a private one (``/root/.driftline``, a test's 0700 tmp dir) works
without opening those up.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from driftline.stack.packages import ensure_installed
from driftline.topics.waiting import wait_until

SUPERUSER = "driftline"
DATABASE = "driftline"
# The OS user the server runs as when we are root.
SERVER_OS_USER = "postgres"


def postgres_answers(url: str) -> bool:
    """Whether a server answers at ``url`` and lets us into its database."""
    try:
        with psycopg.connect(url, connect_timeout=2) as connection:
            connection.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def newest_server_binaries() -> str | None:
    """``/usr/lib/postgresql/<newest version>/bin``, or None when no server is installed."""
    found = [
        path
        for path in glob.glob("/usr/lib/postgresql/*/bin")
        if os.path.basename(os.path.dirname(path)).isdigit()
    ]
    if not found:
        return None
    return max(found, key=lambda path: int(os.path.basename(os.path.dirname(path))))


def ensure_postgres_binaries() -> Path:
    """The directory of PostgreSQL's server binaries, installing Debian's package if needed."""
    return Path(ensure_installed(newest_server_binaries, "postgresql", "PostgreSQL server"))


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the server's children each lead a session
    of their own, so no process group holds them all)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _as_server_user(command: list[str]) -> list[str]:
    """``command`` run as the server's OS user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return command
    caps = "+dac_read_search"
    return [
        "setpriv", f"--reuid={SERVER_OS_USER}", f"--regid={SERVER_OS_USER}", "--init-groups",
        f"--inh-caps={caps}", f"--ambient-caps={caps}", "--", *command,
    ]  # fmt: skip


@dataclass
class LocalPostgres:
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def maintenance_url(self) -> str:
        """The database every cluster has: where ``driftline`` is created from."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    @property
    def cluster_dir(self) -> Path:
        """PGDATA (initdb wants it empty; the log lives beside it)."""
        return self.data_dir / "cluster"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the server (creating its cluster the first time); nothing if it answers."""
        if postgres_answers(self.url):
            return
        binaries = ensure_postgres_binaries()
        self._prepare_dirs()
        if not (self.cluster_dir / "PG_VERSION").exists():
            self._initdb(binaries)
        self._pg_ctl(binaries, "start", "-w", f"--timeout={int(timeout_s)}",
                     "-l", str(self.log_file), "-o", self._server_options())  # fmt: skip
        wait_until(
            lambda: postgres_answers(self.maintenance_url),
            timeout_s=timeout_s,
            what=f"postgres on port {self.port} (log: {self.log_file})",
        )
        self._create_database()

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.touch()
        if os.geteuid() == 0:
            for path in (self.data_dir, self.log_file):
                shutil.chown(path, SERVER_OS_USER, SERVER_OS_USER)

    def _initdb(self, binaries: Path) -> None:
        subprocess.run(
            _as_server_user([
                str(binaries / "initdb"), "-D", str(self.cluster_dir), "-U", SUPERUSER,
                "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8",
            ]),
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def _server_options(self) -> str:
        """Loopback only, the socket in the cluster's own directory."""
        return shlex.join([
            "-c", "listen_addresses=127.0.0.1", "-p", str(self.port),
            "-c", f"unix_socket_directories={self.cluster_dir}",
        ])  # fmt: skip

    def _pg_ctl(self, binaries: Path, action: str, *options: str) -> None:
        subprocess.run(
            _as_server_user([str(binaries / "pg_ctl"), action, "-D", str(self.cluster_dir),
                             *options]),
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip

    def _create_database(self) -> None:
        with psycopg.connect(self.maintenance_url, autocommit=True) as connection:
            exists = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if exists is None:
                connection.execute(f'CREATE DATABASE "{DATABASE}"')

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.cluster_dir / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None

    def kill(self) -> None:
        """SIGKILL the postmaster and its children, as a crash of the machine would: clients
        see the connection refused; the next start recovers from the write-ahead log.
        It returns once they are gone from the process table: a new postmaster takes a
        dead one's pid that is still there (a zombie init has not reaped yet) for a server
        still running, and children left alive hold the shared memory it refuses."""
        pid = self._postmaster_pid()
        if pid is None:
            raise RuntimeError(f"no postgres running in {self.cluster_dir}")
        killed = (pid, *_children(pid))
        for process in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process, signal.SIGKILL)
        wait_until(
            lambda: not any(Path(f"/proc/{process}").exists() for process in killed),
            timeout_s=30,
            what="postgres processes killed and reaped",
        )

    def stop(self) -> None:
        """A fast shutdown (sessions ended, a checkpoint written); nothing if not running."""
        pid = self._postmaster_pid()
        if pid is None:
            return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        self._pg_ctl(ensure_postgres_binaries(), "stop", "-w", "-m", "fast")
