"""`driftline stack prepare` installs the walk-through's tools (kcat, jq) when missing,
in one apt-get run, and says plainly what to install when it cannot."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from driftline import stack
from driftline.settings import Settings
from driftline.stack import packages


class FakeMachine:
    """PATH and apt-get as seen by ``packages``: installing a package puts its command on PATH."""

    def __init__(self, on_path: set[str], root: bool = True) -> None:
        self.on_path = {*on_path, "apt-get"}
        self.root = root
        self.runs: list[list[str]] = []

    def which(self, command: str) -> str | None:
        return f"/usr/bin/{command}" if command in self.on_path else None

    def run(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        self.runs.append(argv)
        if argv[:2] == ["apt-get", "install"]:
            self.on_path.update(a for a in argv[2:] if not a.startswith("-"))
        return subprocess.CompletedProcess(argv, 0)


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> FakeMachine:
    fake = FakeMachine(on_path=set())
    monkeypatch.setattr(packages.shutil, "which", fake.which)
    monkeypatch.setattr(packages.subprocess, "run", fake.run)
    monkeypatch.setattr(packages.os, "geteuid", lambda: 0 if fake.root else 1000)
    return fake


def test_missing_tools_are_installed_in_one_apt_get_run(machine: FakeMachine) -> None:
    machine.on_path.add("jq")
    found = packages.ensure_commands(packages.WALKTHROUGH_TOOLS)
    assert found == {"kcat": "/usr/bin/kcat", "jq": "/usr/bin/jq"}
    installs = [argv for argv in machine.runs if argv[:2] == ["apt-get", "install"]]
    assert len(installs) == 1
    assert installs[0][-1] == "kcat"
    assert "jq" not in installs[0]


def test_nothing_runs_when_every_tool_is_there(machine: FakeMachine) -> None:
    machine.on_path.update({"kcat", "jq"})
    packages.ensure_commands(packages.WALKTHROUGH_TOOLS)
    assert machine.runs == []


def test_without_root_the_error_names_the_packages(machine: FakeMachine) -> None:
    machine.root = False
    with pytest.raises(RuntimeError, match="install the Debian package\\(s\\) jq, kcat"):
        packages.ensure_commands(packages.WALKTHROUGH_TOOLS)
    assert machine.runs == []


def test_stack_prepare_installs_kcat_and_jq(
    machine: FakeMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A configured broker and a Redis that answers: prepare has nothing else to do.
    monkeypatch.setattr(stack, "redis_answers", lambda url: True)
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", redis_url="redis://127.0.0.1:1")
    stack.prepare(settings)
    assert {"kcat", "jq"} <= machine.on_path
