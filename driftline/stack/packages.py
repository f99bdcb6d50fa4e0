"""Installing a missing tool from Debian's packages, as the quick start promises."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping

# What the README's walk-through for a service in another language runs besides curl:
# kcat publishes to the ingest topic, jq reads the API's JSON answers. Command -> package.
WALKTHROUGH_TOOLS: Mapping[str, str] = {"kcat": "kcat", "jq": "jq"}

# The Prometheus server the tests start to evaluate every dashboard query and scrape the
# processes' /metrics (a CI machine prepared by ``driftline stack prepare`` has it).
PROMETHEUS_SERVER: Mapping[str, str] = {"prometheus": "prometheus"}


def ensure_command(command: str, debian_package: str) -> str:
    """The path of ``command``, installing ``debian_package`` with apt-get when it is absent."""
    return ensure_commands({command: debian_package})[command]


def ensure_commands(packages: Mapping[str, str]) -> dict[str, str]:
    """The path of each command, installing the Debian packages of the missing ones in one
    apt-get run (one index update however many are missing)."""
    missing = {
        command: package for command, package in packages.items() if not shutil.which(command)
    }
    if missing:
        _apt_install(sorted(set(missing.values())))
    found: dict[str, str] = {}
    for command, package in packages.items():
        path = shutil.which(command)
        if path is None:
            raise RuntimeError(f"apt-get installed {package} but {command} is not on PATH")
        found[command] = path
    return found


def ensure_installed(find: Callable[[], str | None], debian_package: str, what: str) -> str:
    """What ``find`` finds, installing ``debian_package`` first when it finds nothing: for
    tools off PATH (PostgreSQL's server binaries live in a versioned directory)."""
    found = find()
    if found is None:
        _apt_install([debian_package])
        found = find()
    if found is None:
        raise RuntimeError(f"apt-get installed {debian_package} but found no {what}")
    return found


def _apt_install(debian_packages: list[str]) -> None:
    named = ", ".join(debian_packages)
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise RuntimeError(
            f"{named} not installed and cannot be installed automatically (needs root and "
            f"apt-get); install the Debian package(s) {named}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *debian_packages],
        check=True,
        env=env,
    )
