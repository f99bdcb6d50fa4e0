"""Imports point one way: state <- topics <- agents / api <- the application.

``state`` is the pure domain, ``topics`` the wire formats and Redis layout over it,
``agents`` (the workers) and ``api`` (the REST process) two peers on top, and the
application (``driftline/*.py``, ``driftline/stack``) wires them with the settings. A
lower layer that imported a higher one would make configuration flow downwards by
import and tie the peers together; this test reads every module's imports (also those
inside functions and ``TYPE_CHECKING`` blocks) and names each one that points up.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPLICATION = "application"
LAYERS = ("state", "topics", "agents", "api")
ALLOWED = {
    "state": {"state"},
    "topics": {"state", "topics"},
    "agents": {"state", "topics", "agents"},
    "api": {"state", "topics", "api"},
    APPLICATION: {*LAYERS, APPLICATION},
}


def layer_of(module: str) -> str | None:
    """The layer of a ``driftline`` module name; None for third-party modules."""
    parts = module.split(".")
    if parts[0] != "driftline":
        return None
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return APPLICATION


def imported_modules(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative imports hide their layer"
            assert node.module is not None
            if node.module == "driftline":  # `from driftline import settings`
                yield from (f"driftline.{alias.name}" for alias in node.names)
            else:
                yield node.module


def modules() -> Iterator[tuple[str, Path]]:
    """Every source module with its layer (the folders, then the application's)."""
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            yield layer, path
    for path in sorted((ROOT / "driftline").rglob("*.py")):
        if path.relative_to(ROOT / "driftline").parts[0] not in LAYERS:  # the symlinks
            yield APPLICATION, path


def wrong_way_imports() -> list[str]:
    found = []
    for layer, path in modules():
        for module in imported_modules(ast.parse(path.read_text(), str(path))):
            target = layer_of(module)
            if target is not None and target not in ALLOWED[layer]:
                found.append(f"{path.relative_to(ROOT)} ({layer}) imports {module} ({target})")
    return found


def test_every_layer_imports_only_itself_and_the_layers_below() -> None:
    assert wrong_way_imports() == []


def test_the_scan_sees_every_layer() -> None:
    seen = {layer for layer, _ in modules()}
    assert seen == {*LAYERS, APPLICATION}
    assert layer_of("driftline.settings") == APPLICATION
    assert layer_of("driftline.topics.catalog") == "topics"
    assert layer_of("faust") is None
