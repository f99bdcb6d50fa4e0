"""Dead letters keep the original key and value bytes untouched; why and where go in headers.

Keeping the payload byte-for-byte lets an operator fix the cause and replay the message
to the ingest topic as it was. The one exception: a value too large for the dead-letter
topic is cut to fit, and ``driftline.truncated`` says how long it was.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

REASON = "driftline.reason"
SOURCE_TOPIC = "driftline.source.topic"
SOURCE_PARTITION = "driftline.source.partition"
SOURCE_OFFSET = "driftline.source.offset"
TRUNCATED = "driftline.truncated"

# A reason quotes what it found wrong; a quote of a huge value is cut to this.
REASON_MAX_CHARS = 2000
# How long reading one page of dead letters may take before it gives up.
READ_TIMEOUT_S = 20.0
# Room left for the headers and the record's framing when a value is cut.
_HEADROOM = 16 * 1024


class SourceMessage(Protocol):
    """What a dead letter needs of a consumed message (confluent-kafka's ``Message``)."""

    def key(self) -> bytes | None: ...

    def value(self) -> bytes | None: ...

    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    # The original value's length when ``value`` had to be cut; -1: kept whole.
    truncated_from: int = -1

    @classmethod
    def of(cls, message: SourceMessage, reason: str) -> DeadLetter:
        return cls(
            key=message.key(),
            value=message.value(),
            reason=reason,
            source_topic=message.topic() or "",
            source_partition=_int(message.partition()),
            source_offset=_int(message.offset()),
        )

    def fitted(self, max_bytes: int) -> DeadLetter:
        """This letter, its value cut if key, value and headers would pass ``max_bytes``."""
        size = len(self.key or b"") + len(self.value or b"")
        if self.value is None or size + _HEADROOM <= max_bytes:
            return self
        keep = max(0, max_bytes - _HEADROOM - len(self.key or b""))
        return replace(self, value=self.value[:keep], truncated_from=len(self.value))

    def headers(self) -> list[tuple[str, bytes]]:
        reason = self.reason
        if len(reason) > REASON_MAX_CHARS:
            reason = reason[:REASON_MAX_CHARS] + f"... ({len(reason):,} characters)"
        headers = [
            (REASON, reason.encode()),
            (SOURCE_TOPIC, self.source_topic.encode()),
            (SOURCE_PARTITION, str(self.source_partition).encode()),
            (SOURCE_OFFSET, str(self.source_offset).encode()),
        ]
        if self.truncated_from >= 0:
            headers.append((TRUNCATED, str(self.truncated_from).encode()))
        return headers

    @classmethod
    def from_message(
        cls, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> DeadLetter:
        found = {name: raw.decode() for name, raw in headers}
        return cls(
            key=key,
            value=value,
            reason=found.get(REASON, ""),
            source_topic=found.get(SOURCE_TOPIC, ""),
            source_partition=int(found.get(SOURCE_PARTITION, "-1")),
            source_offset=int(found.get(SOURCE_OFFSET, "-1")),
            truncated_from=int(found.get(TRUNCATED, "-1")),
        )


def _int(value: int | None) -> int:
    return -1 if value is None else value


def read_dead_letters(
    bootstrap_servers: str, topic: str, limit: int | None = None
) -> list[DeadLetter]:
    from driftline.topics.reading import read_topic

    letters = [
        DeadLetter.from_message(m.key(), m.value(), m.headers() or [])
        for m in read_topic(bootstrap_servers, topic)
    ]
    return letters if limit is None else letters[-limit:]


# A reason's kind, for the dead-letter counter's ``reason`` label: the reasons are
# sentences quoting what they found (a value, a model, an exception's text), each value
# of a label is a series kept, so they are counted by the way each kind of reason begins.
# Checked in order: the first match names the kind. The unit test builds every reason
# with the code that writes it, so a reworded reason cannot silently change kind.
REASON_KINDS: tuple[tuple[str, str], ...] = (
    ("could not be applied: RecordTooLargeError", "too_large"),
    ("could not be applied:", "exception"),
    ("the broker refused a record", "refused_by_broker"),
    ("message of ", "too_large"),
    ("empty message value", "malformed_json"),
    ("value is not valid JSON", "malformed_json"),
    ("value must be a JSON object", "malformed_json"),
    ("model ", "unknown_model"),
    ("update of event ", "parked_update_expired"),
    ("event ", "too_many_parked_updates"),
    # The PostgreSQL projections' (agents/postgres_projection.py).
    ("PostgreSQL refused", "postgres_refused"),
    ("not a metrics document", "undecodable"),
    ("not an alert record", "undecodable"),
)
# Every other reason: the message is JSON but not a valid ingest operation.
INVALID_EVENT = "invalid_event"


def reason_kind(reason: str) -> str:
    """The kind of a dead letter's reason, one of a few fixed values (``REASON_KINDS``)."""
    for beginning, kind in REASON_KINDS:
        if reason.startswith(beginning):
            return kind
    return INVALID_EVENT


def reason_in(headers: Sequence[tuple[str, bytes]] | None) -> str:
    """The reason a dead letter's headers carry ("" when none)."""
    for name, raw in headers or ():
        if name == REASON:
            return raw.decode(errors="replace")
    return ""


def letter_model(key: bytes | None) -> str | None:
    """The ``project/model`` a dead letter's key names (an ingest key ``project/model/
    event`` or a bin key ``project/model/hour``); None when it names none."""
    if key is None:
        return None
    parts = key.split(b"/")
    if len(parts) < 3 or not parts[0] or not parts[1]:
        return None
    return (parts[0] + b"/" + parts[1]).decode(errors="replace")


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A dead letter as the dead-letter topic holds it: where, when, and the letter."""

    offset: int
    timestamp_ms: int
    letter: DeadLetter


def read_letters_page(
    bootstrap_servers: str,
    topic: str,
    start: int,
    wanted: Callable[[DeadLetter], bool],
    limit: int,
    scan_max: int,
) -> tuple[list[StoredLetter], int | None]:
    """Up to ``limit`` wanted letters from offset ``start`` on, and the offset to go on
    from (None: the topic's end as it was when the read began is reached). At most
    ``scan_max`` letters are looked at, so a page that finds few answers in bounded time."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from driftline.topics.clients import consumer_config
    from driftline.topics.offsets import watermarks

    consumer = Consumer(
        consumer_config(
            bootstrap_servers,
            f"driftline-dead-letters-{uuid.uuid4()}",
            **{"enable.partition.eof": True},
        )
    )
    found: list[StoredLetter] = []
    try:
        low, high = watermarks(consumer, TopicPartition(topic, 0))
        position = max(start, low)
        if position >= high:
            return found, None
        consumer.assign([TopicPartition(topic, 0, position if position > 0 else OFFSET_BEGINNING)])
        scanned = 0
        deadline = time.monotonic() + READ_TIMEOUT_S
        while position < high and len(found) < limit and scanned < scan_max:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dead-letter topic {topic} did not answer in time")
            batch = consumer.consume(min(500, scan_max - scanned), 1.0)
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return found, None
                    continue
                offset = int(message.offset())
                position, scanned = offset + 1, scanned + 1
                letter = DeadLetter.from_message(
                    message.key(), message.value(), message.headers() or []
                )
                if wanted(letter):
                    found.append(StoredLetter(offset, int(message.timestamp()[1]), letter))
                if len(found) >= limit or scanned >= scan_max or position >= high:
                    break
    finally:
        consumer.close()
    return found, (position if position < high else None)
