"""The Redis layout that ``topics.redis_keys`` builds is the one ``topics/SCHEMAS.md``
documents: every key, with placeholders for its parts, is in the document's Redis table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from driftline.topics.redis_keys import RedisKeys

SCHEMAS = Path(__file__).resolve().parents[2] / "topics" / "SCHEMAS.md"
KEYS = RedisKeys("<prefix>")
MODEL = "<project>/<model>"
# Each key with placeholders for its parts (the methods only format them).
PLACEHOLDERS: dict[str, tuple[Any, ...]] = {
    "bin": (MODEL, "<hour>"),
    "bin_hours": (MODEL,),
    "projected": ("<partition>",),
    "owner": ("<partition>",),
    "delete_requests": (MODEL, "<day>"),
    "deleted_events": (MODEL, "<day>"),
}


def test_every_key_has_placeholders_here() -> None:
    methods = {name for name in dir(RedisKeys) if not name.startswith("_")} - {"prefix"}
    assert methods == set(PLACEHOLDERS)


@pytest.mark.parametrize(("name", "parts"), PLACEHOLDERS.items())
def test_each_key_is_documented(name: str, parts: tuple[Any, ...]) -> None:
    key = getattr(KEYS, name)(*parts)
    assert f"| `{key}` |" in SCHEMAS.read_text()
