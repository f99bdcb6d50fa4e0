"""Every Kafka consumer is configured by ``topics.clients.consumer_config``, the one home
of what they share (commits, isolation, fetch queue, logging): a consumer configured by
hand silently misses a rule that the others follow."""

from __future__ import annotations

import ast
from pathlib import Path

from driftline.topics.clients import consumer_config

ROOT = Path(__file__).resolve().parents[2]


def consumers_by_hand() -> list[str]:
    found = []
    for folder in ("agents", "api", "topics", "driftline"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (isinstance(node, ast.Call) and _name(node.func) == "Consumer"):
                    continue
                config = node.args[0] if node.args else None
                if not (isinstance(config, ast.Call) and _name(config.func) == "consumer_config"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def test_every_consumer_is_configured_by_consumer_config() -> None:
    assert consumers_by_hand() == []


def test_a_caller_changes_only_what_it_names() -> None:
    shared = consumer_config("k:1", "g")
    config = consumer_config("k:1", "g", **{"isolation.level": "read_uncommitted"})
    assert config == {**shared, "isolation.level": "read_uncommitted"}
    assert shared["isolation.level"] == "read_committed"
    assert shared["enable.auto.commit"] is False
