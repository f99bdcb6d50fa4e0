"""Dead letters keep the original key and value bytes untouched; why and where go in headers.

Keeping the payload byte-for-byte lets an operator fix the cause and replay the message
to the ingest topic as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

REASON = "driftline.reason"
SOURCE_TOPIC = "driftline.source.topic"
SOURCE_PARTITION = "driftline.source.partition"
SOURCE_OFFSET = "driftline.source.offset"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            (REASON, self.reason.encode()),
            (SOURCE_TOPIC, self.source_topic.encode()),
            (SOURCE_PARTITION, str(self.source_partition).encode()),
            (SOURCE_OFFSET, str(self.source_offset).encode()),
        ]

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
        )


def read_dead_letters(
    bootstrap_servers: str, topic: str, limit: int | None = None
) -> list[DeadLetter]:
    from topics.reading import read_topic

    letters = [
        DeadLetter.from_message(m.key(), m.value(), m.headers() or [])
        for m in read_topic(bootstrap_servers, topic)
    ]
    return letters if limit is None else letters[-limit:]
