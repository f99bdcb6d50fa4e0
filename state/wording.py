"""Values inside error messages, in plain words.

An error message is read by people who may never have seen Python: a value rendered with
``repr`` showed them ``b'...'``, ``None``, ``bytearray(...)`` and single-quoted strings.
``shown`` renders what a request sent the way it was sent (JSON), cut short, and never
fails: a value too deep or too odd for JSON is described instead of raising (an error
message must not turn a 400 into a 500).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, TypeVar

import orjson

SHOWN_CHARS = 80

E = TypeVar("E", bound=StrEnum)


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``value`` as JSON text (``null``, ``"text"``, ``[1, 2]``), at most ``limit`` chars."""
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8", errors="replace")
    try:
        text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        text = _described(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def enum_member(kind: type[E], value: Any, what: str, error: type[Exception]) -> E:
    """``value`` as a member of ``kind``, or ``error`` saying which values are allowed."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise error(f"{what} must be one of {allowed}; got {shown(value)}") from None


def _described(value: Any) -> str:
    """What orjson cannot write: integers beyond 64 bits (the standard library can),
    lists/objects nested too deep, types without a JSON form."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        pass
    if isinstance(value, list | tuple):
        return "a list nested too deeply to show"
    if isinstance(value, dict):
        return "an object nested too deeply to show"
    return f"a value of type {type(value).__name__}"
