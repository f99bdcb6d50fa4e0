"""Bearer tokens scoped to projects, stored only as SHA-256 hashes.

The operator creates tokens with ``driftline api token``; the file
(``DRIFTLINE_API_TOKENS_FILE``) holds ``{"tokens": [{"name", "sha256", "projects",
"all_projects", "created"}]}``. Every API process reads it and reads it again when its
modification time changes, so a new token works without a restart. No file: no token is
valid (every request but /health, /ready and the OpenAPI document gets 401).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from driftline.state.names import name_problem


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid token speaks for."""

    name: str
    projects: frozenset[str]
    all_projects: bool = False

    def may_use(self, project_id: str) -> bool:
        return self.all_projects or project_id in self.projects


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def principals_from(raw: object) -> dict[str, Principal]:
    """The file's tokens by hash; malformed entries are skipped."""
    found: dict[str, Principal] = {}
    entries = raw.get("tokens") if isinstance(raw, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            continue
        projects = entry.get("projects") or []
        found[entry["sha256"]] = Principal(
            str(entry.get("name", "")),
            frozenset(str(p) for p in projects if isinstance(p, str)),
            entry.get("all_projects") is True,
        )
    return found


class TokenStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        # (mtime, inode, size): a rewrite replaces the file, so its inode changes too.
        self._version: tuple[int, int, int] | None = None
        self._principals: dict[str, Principal] = {}
        self._lock = threading.Lock()

    def authenticate(self, header: str | None) -> Principal | None:
        token = bearer(header)
        if token is None:
            return None
        return self._current().get(hash_token(token))

    def _current(self) -> dict[str, Principal]:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return {}
        version = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
        with self._lock:
            if version != self._version:
                try:
                    self._principals = principals_from(orjson.loads(self._path.read_bytes()))
                except (OSError, orjson.JSONDecodeError):
                    self._principals = {}
                self._version = version
            return self._principals


def create_token(
    path: Path, projects: Iterable[str], all_projects: bool = False, name: str = ""
) -> str:
    """A new random token; only its hash is written. Returns the token (shown once)."""
    project_list = sorted(set(projects))
    if not project_list and not all_projects:
        raise ValueError("a token needs at least one --project, or --all-projects")
    for project in project_list:
        problem = name_problem(project, "project")
        if problem is not None:
            raise ValueError(problem)
    token = secrets.token_urlsafe(32)
    try:
        current = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        current = {"tokens": []}
    if not isinstance(current, dict) or not isinstance(current.get("tokens"), list):
        raise ValueError(f"{path} is not a Driftline token file")
    current["tokens"].append(
        {
            "name": name,
            "sha256": hash_token(token),
            "projects": project_list,
            "all_projects": all_projects,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    temporary.write_bytes(orjson.dumps(current, option=orjson.OPT_INDENT_2))
    temporary.chmod(0o600)
    os.replace(temporary, path)
    return token
