"""The secret that only the API and the workers share: the workers' key to their port.

Every worker route but ``/health`` and ``/ready`` requires it in the header
``X-Driftline-Internal-Secret`` (``topics.internal_routes``). The application resolves
it here and passes the value to the worker and the API it builds.

``DRIFTLINE_INTERNAL_SECRET`` sets it (compose passes the same value to both). Unset, a
random secret is kept in ``<home>/internal-secret`` (mode 0600), created by whichever
process needs it first, so a local stack (`driftline stack up`, the demo, the tests)
works with no configuration: its API and workers run as one user with one home.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from driftline.settings import Settings

FILE_NAME = "internal-secret"


def internal_secret(settings: Settings) -> str:
    """The configured secret, else the home's secret file's (created if missing)."""
    if settings.internal_secret:
        return settings.internal_secret
    return _from_file(settings.home / FILE_NAME)


def _from_file(path: Path) -> str:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under a private name, then linked into place: a process racing this
    # one either wins the link or reads the winner's complete file, never a partial one.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(32))
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()
    return _read(path)


def _read(path: Path) -> str:
    secret = path.read_text().strip()
    if not secret:
        raise ValueError(
            f"{path} is empty; delete it (a new secret is made) or set DRIFTLINE_INTERNAL_SECRET"
        )
    return secret
