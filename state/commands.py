"""What an ingest message asks for, once decoded and checked against the wire format.

``ref`` ties a command back to the message it came from (an index into the batch) so
that a rejection can dead-letter the original bytes; ``offset`` is the message's offset
in its partition, which makes redelivery detectable (all messages about one event share
a partition, so their offsets are ordered); ``received_ms`` is the message's Kafka
timestamp, which stands in for the event time when none is given and is the arrival time
for the ingest-delay metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

JSONValue = Any  # None | bool | int | float | str | list | dict, as orjson decodes it
# How deeply a column value may nest lists and objects. orjson writes at most 254 levels,
# and a stored event wraps the value in two more: a value nested 300 deep was accepted
# by the worker, could not be stored, and stopped the partition.
MAX_VALUE_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Insert:
    model_key: str
    event_id: str
    columns: dict[str, JSONValue]
    timestamp_ms: int | None
    received_ms: int
    offset: int
    ref: int = 0


@dataclass(frozen=True, slots=True)
class Update:
    model_key: str
    event_id: str
    columns: dict[str, JSONValue]
    timestamp_ms: int | None
    received_ms: int
    offset: int
    ref: int = 0


@dataclass(frozen=True, slots=True)
class Delete:
    model_key: str
    event_id: str
    received_ms: int
    offset: int
    ref: int = 0
    # False (the default, SPEC §2): the metric bins keep the event's contribution.
    update_metrics: bool = False
    # The deletion request this delete belongs to, when it came from the API.
    deletion_id: str | None = None


Command = Insert | Update | Delete


@dataclass(frozen=True, slots=True)
class DeleteIds:
    """One partition's share of a delete-by-ids request (its ids hash to that partition)."""

    model_key: str
    deletion_id: str
    event_ids: tuple[str, ...]
    update_metrics: bool
    offset: int
    ref: int = 0


@dataclass(frozen=True, slots=True)
class DeleteRange:
    """A time-range deletion, sent to every partition: ``start_ms <= timestamp < end_ms``."""

    model_key: str
    deletion_id: str
    start_ms: int
    end_ms: int
    update_metrics: bool
    offset: int
    ref: int = 0


@dataclass(frozen=True, slots=True)
class ContinueDeletion:
    """Asks the partition for the next step of a time-range deletion.

    A range deletion runs in steps of ``EVENT_DELETION_BATCH_SIZE`` events; after each
    step with work left the merge agent sends itself this message on the same partition,
    so the steps take turns with ingestion in the partition's own order, and a replay
    after a crash repeats exactly the steps it did.
    """

    model_key: str
    deletion_id: str
    offset: int
    ref: int = 0


DeletionCommand = DeleteIds | DeleteRange | ContinueDeletion


@dataclass(frozen=True, slots=True)
class RebuildBins:
    """Asks the partition to recompute its shares of a model's bins from the events it
    stores, and to send them all (``driftline replay bins``): sent to every partition.
    ``generation``: a new one the bins switch to once every partition sent its shares; 0,
    the shares replace the ones in use as they arrive."""

    model_key: str
    offset: int
    ref: int = 0
    generation: int = 0


def event_id_of(value: object) -> str | None:
    """``value`` as an event id, or None if it cannot be one: any non-empty string ('/'
    included: the event key splits at its first two '/'), or an integer as its decimal
    string. The worker, the client and the REST API's lookups and deletes all read ids so."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def event_key(model_key: str, event_id: str) -> str:
    """The Kafka key of every message about one event, and the events table's key."""
    return f"{model_key}/{event_id}"


def nesting_problem(columns: Mapping[str, JSONValue]) -> str | None:
    """Why an event's columns cannot be stored, if one nests lists/objects deeper than
    ``MAX_VALUE_DEPTH``: the worker dead-letters such a message with these words, and the
    client and the REST API refuse the row with them before sending it."""
    for name, value in columns.items():
        if isinstance(value, list | dict) and _depth_exceeds(value, MAX_VALUE_DEPTH):
            return (
                f"column '{name}' holds a value nested more than {MAX_VALUE_DEPTH} levels deep; "
                "flatten it or send it as a string"
            )
    return None


def _depth_exceeds(value: list[Any] | dict[str, Any], limit: int) -> bool:
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, list | dict)
        ]
        if not level:
            return False
    return True
