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


Command = Insert | Update | Delete


def event_key(model_key: str, event_id: str) -> str:
    """The Kafka key of every message about one event, and the events table's key."""
    return f"{model_key}/{event_id}"
