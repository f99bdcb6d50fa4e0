"""What an ingest message asks for, once decoded and checked against the wire format.

``ref`` ties a command back to the message it came from (an index into the batch) so
that a rejection can dead-letter the original bytes; ``offset`` is the message's offset
in its partition, which makes redelivery detectable (all messages about one event share
a partition, so their offsets are ordered); ``received_ms`` is the message's Kafka
timestamp, which stands in for the event time when none is given and is the arrival time
for the ingest-delay metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSONValue = Any  # None | bool | int | float | str | list | dict, as orjson decodes it


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


def event_key(model_key: str, event_id: str) -> str:
    """The Kafka key of every message about one event, and the events table's key."""
    return f"{model_key}/{event_id}"
