"""Installing a missing tool from Debian's packages, as the quick start promises."""

from __future__ import annotations

import os
import shutil
import subprocess


def ensure_command(command: str, debian_package: str) -> str:
    """The path of ``command``, installing ``debian_package`` with apt-get when it is absent."""
    found = shutil.which(command)
    if found is not None:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise RuntimeError(
            f"{command} is not installed and cannot be installed automatically (needs root "
            f"and apt-get); install the {debian_package} package"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", debian_package],
        check=True,
        env=env,
    )
    found = shutil.which(command)
    if found is None:
        raise RuntimeError(f"apt-get installed {debian_package} but {command} is not on PATH")
    return found
