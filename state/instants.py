"""Points in time as users write them: one set of forms for every route that takes a time.

A service in any language should not have to learn a format per route (issue 9), so
``GET /v1/metrics`` (start, end), ``GET /v1/events`` (start_time, end_time), a delete's
``time_range`` and the worker's own views all read a time here:

- UTC milliseconds since the epoch: ``1763805600000`` (a JSON integer in a body too);
- ISO 8601 with a zone: ``2026-11-22T10:00:00Z``, ``2026-11-22T11:00:00+01:00``;
- ``2026-11-22 10:00:00``: the form deletes always took, read as UTC.

An ISO time without a zone in any other shape is refused rather than guessed: whose local
time it is cannot be known. Times before 1970 are refused too (no event can have one, and
a negative time reaching the pipeline is a command no partition can run), and times after
9999 (beyond what a date can say). Every error is a ValueError whose text says what to
change, in plain words, for a 400.

A time inside a message or a publish row is stricter: UTC milliseconds only, as the wire
format carries it (``epoch_ms_problem``), so the REST API refuses a row the worker would
dead-letter, in the same words.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from driftline.state.wording import shown

HOUR_MS = 3_600_000
FORMS = "UTC milliseconds, ISO 8601 with a zone (Z or +hh:mm), or 'YYYY-MM-DD HH:MM:SS' (UTC)"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# The first instant a date cannot name: 10000-01-01T00:00:00Z.
_LIMIT_MS = (datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH) // _MS + 24 * HOUR_MS
_UTC_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
_DIGITS = re.compile(r"-?[0-9]+")


def parse_instant(raw: object, name: str) -> int:
    """UTC milliseconds since the epoch; a ValueError says what to change.

    Milliseconds come as text (a query string) or as an integer (a JSON body). A time
    with sub-millisecond digits is cut to its millisecond, as the bins and events are.
    """
    if raw is None or raw == "":
        raise ValueError(f"{name} is required: {FORMS}")
    if isinstance(raw, int) and not isinstance(raw, bool):
        return _in_range(raw, str(raw), name)
    if not isinstance(raw, str):
        raise ValueError(f"{name} must be a string or an integer: {FORMS}; got {_kind(raw)}")
    if _DIGITS.fullmatch(raw):
        return _in_range(_integer(raw), raw, name)
    return _in_range(_milliseconds(_parse_text(raw, name)), raw, name)


def epoch_ms(value: object) -> int | None:
    """``value`` if it is a time as the wire format carries one (UTC milliseconds since the
    epoch: a non-negative integer, not a boolean), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def epoch_ms_problem(value: object, name: str) -> str | None:
    """Why ``value`` is no ``epoch_ms`` time, in the words the API and dead letters use."""
    if epoch_ms(value) is not None:
        return None
    return (
        f"{name} must be UTC milliseconds since the epoch (a non-negative integer); "
        f"got {shown(value)}"
    )


def parse_hour(raw: object, name: str) -> int:
    """``parse_instant`` of a time on the hour (minutes, seconds, milliseconds 0).

    Deletions run on whole hour bins: a range that cut an hour would leave its bin half
    retracted, so an unaligned time is refused with the hour it falls in.
    """
    millis = parse_instant(raw, name)
    if millis % HOUR_MS:
        hour = _text(millis - millis % HOUR_MS)
        raise ValueError(
            f"{name} must be aligned to the hour (minutes, seconds and milliseconds 0); "
            f"got {_quoted(str(raw))}, which falls in the hour starting {hour}"
        )
    return millis


def _parse_text(raw: str, name: str) -> datetime:
    if _UTC_SHAPE.fullmatch(raw):
        try:
            return datetime.strptime(raw, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(
                f"{name}={_quoted(raw)} is not a valid date and time (month 01-12, a day "
                "of that month, hour 00-23, minutes and seconds 00-59)"
            ) from None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name}={_quoted(raw)} is not a time: give {FORMS}") from None
    if parsed.tzinfo is None:
        raise ValueError(
            f"{name}={_quoted(raw)} has no time zone; add one (Z or +hh:mm), or write it as "
            "'YYYY-MM-DD HH:MM:SS' to mean UTC"
        )
    return parsed


def _integer(digits: str) -> int:
    """The digits' value, or a stand-in just out of range for a number of any length
    (``int()`` refuses more than 4,300 digits with a message about Python)."""
    significant = digits.lstrip("-").lstrip("0")
    if len(significant) > len(str(_LIMIT_MS)):
        return -1 if digits.startswith("-") else _LIMIT_MS
    return int(digits)


def _milliseconds(parsed: datetime) -> int:
    """Exact integer milliseconds (a float timestamp would round some of them)."""
    return (parsed - _EPOCH) // _MS


def _in_range(millis: int, raw: str, name: str) -> int:
    if millis < 0:
        raise ValueError(
            f"{name}={_quoted(raw)} is before 1970-01-01T00:00:00Z; no event can be that old: "
            "give a time from 1970 on"
        )
    if millis >= _LIMIT_MS:
        raise ValueError(f"{name}={_quoted(raw)} is after the year 9999; give an earlier time")
    return millis


def _text(millis: int) -> str:
    return (_EPOCH + millis * _MS).strftime("'%Y-%m-%d %H:%M:%S' (UTC)")


def _quoted(raw: str, limit: int = 40) -> str:
    """The user's text in quotes, cut short: a 5,000-digit number is not worth echoing."""
    return f"'{raw}'" if len(raw) <= limit else f"'{raw[: limit - 3]}...'"


def _kind(value: object) -> str:
    """A value's JSON type in words, not its Python repr."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"the number {value:g} (milliseconds are a whole number)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
