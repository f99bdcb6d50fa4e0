"""What the API answers: pure shaping of deletion status and event rows (JSON and CSV)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from typing import Any

from driftline.state import exact_json
from driftline.state.deletions import DeletionState
from driftline.state.spec import ModelSpec


def deletion_status(
    deletion_id: str, expected: Mapping[str, int], records: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The request's status from the partitions' records.

    ``expected`` is how many commands each partition was sent; a partition is done when
    it has applied them all and has no work left. One partition waiting for the daily cap
    makes the whole request wait.
    """
    done = 0
    requested = 0
    deleted = 0
    waiting = False
    for partition, wanted in expected.items():
        record = records.get(partition)
        if record is None:
            continue
        requested += int(record.get("requested", 0))
        deleted += int(record.get("deleted", 0))
        waiting = waiting or record.get("state") == DeletionState.WAITING_FOR_DAILY_CAP
        if int(record.get("commands", 0)) >= wanted and record.get("state") == DeletionState.DONE:
            done += 1
    if done == len(expected):
        status = DeletionState.DONE
    elif waiting:
        status = DeletionState.WAITING_FOR_DAILY_CAP
    else:
        status = DeletionState.RUNNING
    return {
        "deletion_id": deletion_id,
        "status": status,
        # By ids: the distinct ids asked for, of which ``deleted`` were found (0 for a range).
        "requested": requested,
        "deleted": deleted,
        "partitions_done": done,
        "partitions": len(expected),
    }


def public_row(event: Mapping[str, Any]) -> dict[str, Any]:
    """A worker's row (event_id, event_timestamp, event) as a slice row."""
    row: dict[str, Any] = {
        "__event_id": event["event_id"],
        "__event_timestamp": event["event_timestamp"],
    }
    for name, value in event["event"].items():
        if name not in row:
            row[name] = value
    return row


def csv_columns(spec: ModelSpec, rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The header: ids and time, the spec's columns in role order, then any others seen."""
    header = ["__event_id", "__event_timestamp"]
    header += [*spec.inputs, *spec.outputs, *spec.targets, *spec.decisions, *spec.metadata]
    known = set(header)
    extra = sorted({name for row in rows for name in row} - known)
    return header + extra


def to_csv(header: list[str], rows: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in header])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return exact_json.dumps(value).decode()
    return str(value)
