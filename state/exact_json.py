"""JSON through orjson, exact for integers of any size.

orjson is fast, but it refuses to write an integer outside [-2**63, 2**64) and reads one
as a float, silently changing it. Driftline meets such integers in two ways: users send
them as column values (SPEC: values are stored as sent), and bin counters outgrow 64 bits
(a regression model's squared-error sums pass 2**63 once targets exceed ~3 in magnitude).
Every path that carries them goes through here, and pays for the standard library only
when it sees one.

- ``dumps`` / ``loads``: plain JSON, for what others read and write (the wire, HTTP, the
  metrics topic, Redis). ``loads`` scans for a run of 19 digits (every integer orjson
  might not read exactly has one) and reads those documents with the standard library.
- ``dumps_tagged`` / ``loads_tagged``: Driftline's own records (its stores and
  changelogs): the writer knows when it needed the standard library and says so with a
  leading byte, so the reader never scans.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

# Marks a tagged value written by the standard library (it holds an integer beyond 64
# bits); no JSON document starts with it.
_BIG_INTEGERS = b"J"
# The scan for 19 digits in a row: every digit made "0", every other byte " ", then a
# substring search. Both are plain C loops; the regular expression ``[0-9]{19}`` cost
# 12 µs on a 390-byte event (the floats' digit runs make it retry at every digit), four
# times orjson's parse, against 1.4 µs for this (py-spy: 17% of the merge agent's time
# was in ``loads``, 2/3 of it the scan).
_DIGITS_ONLY = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGITS = b"0" * 19


class JSONError(ValueError):
    """Not valid JSON (the same rules whichever parser read it)."""


def dumps(value: Any, option: int = 0) -> bytes:
    """Plain JSON; integers of any size written out in full."""
    try:
        return orjson.dumps(value, option=option)
    except TypeError as error:
        if "Integer exceeds" not in str(error):
            raise
        indent = 2 if option & orjson.OPT_INDENT_2 else None
        separators = None if indent else (",", ":")
        return json.dumps(
            value, separators=separators, indent=indent, ensure_ascii=False, default=_numpy
        ).encode()


def loads(raw: bytes | str) -> Any:
    """Plain JSON, every integer exact; ``JSONError`` for what orjson would refuse."""
    encoded = raw.encode() if isinstance(raw, str) else raw
    if _LONG_DIGITS not in encoded.translate(_DIGITS_ONLY):
        try:
            return orjson.loads(encoded)
        except orjson.JSONDecodeError as error:
            raise JSONError(str(error)) from None
    return _loads_exactly(encoded)


def dumps_tagged(value: Any) -> bytes:
    """For Driftline's own records: orjson's bytes, or a tagged exact form."""
    try:
        return orjson.dumps(value)
    except TypeError as error:
        if "Integer exceeds" not in str(error):
            raise
        return _BIG_INTEGERS + json.dumps(value, separators=(",", ":")).encode()


def loads_tagged(raw: bytes) -> Any:
    if raw[:1] == _BIG_INTEGERS:
        return json.loads(raw[1:])
    return orjson.loads(raw)


def _loads_exactly(raw: bytes) -> Any:
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
        # orjson refuses lone surrogates; so does UTF-8, which this checks.
        json.dumps(value, ensure_ascii=False).encode()
    except RecursionError:
        raise JSONError("nested too deeply") from None
    except (ValueError, UnicodeError) as error:
        raise JSONError(str(error)) from None
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text} is infinity when parsed as double")
    return number


def _numpy(value: Any) -> Any:
    """What orjson's OPT_SERIALIZE_NUMPY would write, for the standard library."""
    tolist = getattr(value, "tolist", None)
    if tolist is None:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    return tolist()
