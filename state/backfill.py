"""The pure rules of ``driftline backfill``: where a record's fields come from, the id of a
row that has none, how far a checkpoint may advance, and the report.

A backfill publishes historical events with their original times, and may be killed and
rerun: every rule here serves "rerun the same command and end exact". A row without an
id gets one derived from where it comes from (the same row, the same id: sent twice it
is a replacement, SPEC §2), and the checkpoint only moves past rows the broker
acknowledged. No I/O here: ``driftline/backfill.py`` reads the sources, publishes and
writes the checkpoint file.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from driftline.state.spec import ModelSpec
from driftline.state.tabular import InvalidEventError, OutgoingEvent, json_value, outgoing_event

# The two mapping targets that are not columns: the event's id and time.
EVENT_ID = "event_id"
EVENT_TIMESTAMP = "event_timestamp"

# Derived ids live in their own uuid5 namespace, so they never collide with user ids
# derived some other way from the same text.
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://driftline/backfill")

# The ``where`` given to the row checks, cut from their messages: a refusal's reason is
# the problem alone (the report says where, in its examples).
_WHERE = "row"

# A problem quotes the value it refuses (``cannot read "N/A" as a timestamp``): counted
# by reason, the quoted JSON texts are left out, and the examples show them.
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
# Distinct refusal reasons a report keeps apart (a problem may show a number too); the
# rest share one line.
MAX_REASONS = 20
OTHER_REASONS = "other reasons"
EXAMPLES_PER_REASON = 3

FieldPath = tuple[str, ...]


class InvalidMappingError(ValueError):
    """A ``--map`` the command refuses before it reads anything."""


def parse_mapping(pairs: Iterable[str], spec: ModelSpec) -> dict[str, FieldPath]:
    """``TARGET=PATH`` pairs as {target: path}; a path is dotted (``txn.id``: the field
    ``id`` of the object ``txn``), a target is ``event_id``, ``event_timestamp`` or one
    of the spec's columns."""
    targets = {EVENT_ID, EVENT_TIMESTAMP, *spec.columns}
    mapping: dict[str, FieldPath] = {}
    for pair in pairs:
        target, equals, path = pair.partition("=")
        steps = tuple(path.split("."))
        if not equals or not target or not all(steps):
            raise InvalidMappingError(f"--map {pair!r}: write TARGET=PATH, e.g. event_id=txn.id")
        if target not in targets:
            raise InvalidMappingError(
                f"--map {pair!r}: {target!r} is neither event_id, event_timestamp nor a "
                f"column of {spec.key} ({', '.join(sorted(spec.columns))})"
            )
        if target in mapping:
            raise InvalidMappingError(f"--map {pair!r}: {target} is mapped twice")
        mapping[target] = steps
    return mapping


def mapped_row(
    record: Any, mapping: Mapping[str, FieldPath], spec: ModelSpec
) -> dict[str, Any] | str:
    """A JSON record as the row a file would hold (the spec's id and time columns and its
    columns), or why it cannot be one.

    A target the mapping names must be found in the record: a record without it is
    likely of another kind, and is refused. A target it does not name is read from the
    top-level field of its own name (the spec's id and time columns for the id and time)
    when there is one.
    """
    if not isinstance(record, dict):
        return f"a record must be a JSON object, got {_kind(record)}"
    row: dict[str, Any] = {}
    names = {EVENT_ID: spec.event_id_col, EVENT_TIMESTAMP: spec.event_ts_col}
    for target in (EVENT_ID, EVENT_TIMESTAMP, *sorted(spec.columns)):
        path = mapping.get(target)
        found = _lookup(record, path or (names.get(target, target),))
        if isinstance(found, _Missing):
            if path is not None:
                return f"no field {'.'.join(path)} (mapped to {target})"
            continue
        row[names.get(target, target)] = found
    return row


class _Missing:
    """The lookup's answer for a path the record does not hold (null is a value)."""


_MISSING = _Missing()


def _lookup(record: dict[str, Any], path: FieldPath) -> Any:
    found: Any = record
    for step in path:
        if not isinstance(found, dict) or step not in found:
            return _MISSING
        found = found[step]
    return found


def _kind(value: Any) -> str:
    """A JSON value's kind, in JSON's words (a reason names the kind, not the value, so
    that records refused alike count under one reason)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "null"


def lacks_event_id(row: Mapping[str, Any], id_column: str) -> bool:
    """Whether the row has no id of its own (no column, or an empty cell: null, NaN)."""
    try:
        return json_value(row.get(id_column), "row", id_column) is None
    except InvalidEventError:
        return False  # a value with no JSON form: refused as an id by the usual check


def derived_event_id(origin: str, index: int) -> str:
    """The id of row ``index`` of ``origin`` (a file's path, a topic partition) when it has
    none: the same on every run, so a row sent again replaces itself."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{origin}#{index}"))


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One row of a source, with where it comes from."""

    part: str  # the checkpoint's key: a file's name, a partition's number
    origin: str  # what a derived id is made of: a file's path, topic/partition
    index: int  # the row's number in its file, or its offset
    row: Mapping[str, Any] | str  # the row, or why the record is no row


def backfill_event(spec: ModelSpec, source_row: SourceRow) -> OutgoingEvent | str:
    """The insert a source row becomes, or why it is refused: the client's checks, an id
    derived from the row's place when it has none, and an event time it must have (a
    backfill without the original times would pile history into the current hour)."""
    row = source_row.row
    if isinstance(row, str):
        return row
    derived = None
    if lacks_event_id(row, spec.event_id_col):
        derived = derived_event_id(source_row.origin, source_row.index)
    try:
        outgoing = outgoing_event(spec, row, update=False, event_id=derived, where=_WHERE)
    except InvalidEventError as error:
        return str(error).removeprefix(f"{_WHERE}: ")
    if outgoing.timestamp_ms is None:
        return f"no event time (its {spec.event_ts_col!r} is empty or absent)"
    return outgoing


def advanced(position: Mapping[str, int], delivered: Mapping[str, int]) -> dict[str, int]:
    """The checkpoint's position (rows done per file, next offset per partition) once the
    broker has acknowledged everything up to ``delivered``: never backwards, so a part
    acknowledged again by a resumed run cannot lose ground."""
    moved = dict(position)
    for part, after in delivered.items():
        moved[part] = max(after, moved.get(part, 0))
    return moved


@dataclass
class BackfillReport:
    """What a backfill has done so far, over every run of it (the checkpoint keeps it)."""

    published: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    # Up to EXAMPLES_PER_REASON places (file and row, topic partition and offset) a reason.
    examples: dict[str, list[str]] = field(default_factory=dict)

    def refuse(self, problem: str, where: str) -> None:
        """Count a refused row under its problem's reason, keeping the first few places
        (with the problem itself, where it quoted a value) as examples."""
        reason = _QUOTED.sub('"…"', problem)
        if reason not in self.refused and len(self.refused) >= MAX_REASONS:
            reason = OTHER_REASONS
        self.refused[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(where if reason == problem else f"{where}: {problem}")

    def to_dict(self) -> dict[str, Any]:
        return {"published": self.published, "refused": dict(self.refused),
                "examples": self.examples}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> BackfillReport:
        return cls(raw["published"], Counter(raw["refused"]), dict(raw["examples"]))


def report_lines(
    total: BackfillReport, run_published: int | None = None, elapsed_s: float = 0.0
) -> list[str]:
    """The final report: published (in all and, after a run, by it with its rate), then
    refused rows by reason, most frequent first, each with a few places to look."""
    published = f"published {total.published:,} events"
    if run_published is not None:
        rate = run_published / elapsed_s if elapsed_s > 0 else 0.0
        published += f" ({run_published:,} by this run in {elapsed_s:.1f} s: {rate:,.0f} events/s)"
    lines = [published, f"refused {total.refused.total():,}"]
    for reason, count in sorted(total.refused.items(), key=lambda item: (-item[1], item[0])):
        lines.append(f"  {count:>9,}  {reason}")
        lines.extend(f"{'':13}e.g. {example}" for example in total.examples[reason])
    return lines


@dataclass
class Checkpoint:
    """How far a backfill got: rows done per file (next offset per partition) whose
    delivery the broker acknowledged, and the report up to there.

    ``fingerprint`` says what the source was when the backfill began (its files' sizes
    and times, a topic's mapping): a position in a changed source means nothing.
    """

    source: str
    fingerprint: Any
    position: dict[str, int] = field(default_factory=dict)
    finished: bool = False
    report: BackfillReport = field(default_factory=BackfillReport)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "fingerprint": self.fingerprint,
                "position": self.position, "finished": self.finished,
                "report": self.report.to_dict()}  # fmt: skip

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Checkpoint:
        report = BackfillReport.from_dict(raw["report"])
        return cls(raw["source"], raw["fingerprint"], dict(raw["position"]), raw["finished"],
                   report)  # fmt: skip
