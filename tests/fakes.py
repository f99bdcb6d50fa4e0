"""Stand-ins for what the broker hands the handlers, for unit tests without a broker."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FakeMessage:
    """The part of ``confluent_kafka.Message`` that the handlers read."""

    key_: bytes | None
    value_: bytes | None
    offset_: int
    timestamp_ms: int = 0
    partition_: int = 0
    topic_: str = "ingest"
    headers_: list[tuple[str, bytes]] | None = None

    def key(self) -> bytes | None:
        return self.key_

    def value(self) -> bytes | None:
        return self.value_

    def offset(self) -> int:
        return self.offset_

    def timestamp(self) -> tuple[int, int]:
        return (1, self.timestamp_ms)

    def partition(self) -> int:
        return self.partition_

    def topic(self) -> str:
        return self.topic_

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self.headers_
