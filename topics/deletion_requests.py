"""Accepted delete requests: the compacted topic ``<prefix>.deletion-requests``.

The API writes each request it accepts here (keyed by deletion id) before it answers
202, so the request outlives any Redis: the status endpoint finds it here, and a wiped
rate-limit counter is rebuilt from the number of a model's requests of that UTC day.
Each API process keeps an in-memory view of the topic (``DeletionRequests``), caught up
on a miss like the model registry. The topic keeps records ``KEEP_MS`` (30 days, the
status window) and holds no event id: only how many ids a request named.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from driftline.state.tables import TEXT, Codec
from driftline.topics.producer import CheckedProducer
from driftline.topics.views import TopicView

DAY_MS = 24 * 3600 * 1000
# How long a deletion's status can be asked for (and the topic's retention).
KEEP_MS = 30 * DAY_MS
# The fields a request record must have (what the status endpoint shows and counts by).
REQUIRED = ("deletion_id", "project_id", "model_id", "model", "kind", "update_metrics",
            "expected", "created")  # fmt: skip


def created_ms(record: Mapping[str, Any]) -> int:
    """UTC epoch ms of a record's ``created`` (ISO 8601 with an offset)."""
    return int(datetime.fromisoformat(record["created"]).timestamp() * 1000)


def encode_request(record: Mapping[str, Any]) -> bytes:
    missing = [name for name in REQUIRED if name not in record]
    if missing:
        raise ValueError(f"a deletion request record needs {', '.join(missing)}")
    created_ms(record)  # refuses a record whose creation time cannot be read back
    return orjson.dumps(record)


def decode_request(raw: bytes) -> dict[str, Any]:
    """A request record; ``ValueError`` for one that lacks a field or a readable time."""
    record = orjson.loads(raw)
    if not isinstance(record, dict) or any(name not in record for name in REQUIRED):
        raise ValueError("not a deletion request record")
    created_ms(record)
    return record


# The topic's value: one accepted request (SCHEMAS.md); keyed by its deletion id.
DELETION_REQUEST: Codec[dict[str, Any]] = Codec(encode_request, decode_request)


def publish_request(producer: CheckedProducer, topic: str, record: Mapping[str, Any]) -> None:
    """Produce and flush (raises ``DeliveryError`` if the broker did not take it)."""
    producer.produce(
        topic, TEXT.encode(str(record["deletion_id"])), DELETION_REQUEST.encode(dict(record))
    )
    producer.flush(30.0)


def withdraw_request(producer: CheckedProducer, topic: str, deletion_id: str) -> None:
    """A tombstone: the request was accepted but its commands never reached the broker."""
    producer.produce(topic, deletion_id.encode(), None)
    producer.flush(30.0)


class DeletionRequestIndex:
    """The requests by id, and which of them each model made each UTC day (pure)."""

    def __init__(self, keep_ms: int = KEEP_MS) -> None:
        self._keep_ms = keep_ms
        self._records: dict[str, dict[str, Any]] = {}
        self._by_day: dict[tuple[str, int], set[str]] = defaultdict(set)

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record of the topic; a tombstone withdraws; a foreign record is ignored."""
        if key is None:
            return
        deletion_id = key.decode(errors="replace")
        self._forget(deletion_id)
        if value is None:
            return
        try:
            record = decode_request(value)
            day = created_ms(record) // DAY_MS
            model = str(record["model"])
        except (orjson.JSONDecodeError, TypeError, ValueError):
            return
        self._records[deletion_id] = record
        self._by_day[(model, day)].add(deletion_id)

    def get(self, deletion_id: str, now_ms: int) -> dict[str, Any] | None:
        """The request, unless unknown or older than the status window."""
        record = self._records.get(deletion_id)
        if record is None or now_ms - created_ms(record) >= self._keep_ms:
            return None
        return record

    def count(self, model: str, day: int) -> int:
        """How many requests of ``model`` were accepted on UTC day ``day`` (epoch days)."""
        return len(self._by_day.get((model, day), ()))

    def prune(self, now_ms: int) -> None:
        """Forget the requests past the status window (the topic drops them too)."""
        for deletion_id, record in list(self._records.items()):
            if now_ms - created_ms(record) >= self._keep_ms:
                self._forget(deletion_id)

    def __len__(self) -> int:
        return len(self._records)

    def _forget(self, deletion_id: str) -> None:
        record = self._records.pop(deletion_id, None)
        if record is not None:
            slot = (str(record["model"]), created_ms(record) // DAY_MS)
            self._by_day[slot].discard(deletion_id)
            if not self._by_day[slot]:
                del self._by_day[slot]


class DeletionRequests:
    """An API process's view of the deletion-requests topic (thread-safe)."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._index = DeletionRequestIndex()
        self._view = TopicView(bootstrap_servers, topic, self._index.apply, "deletion requests")
        self._pruned_day = -1
        self.catch_up()

    def get(self, deletion_id: str, now_ms: int) -> dict[str, Any] | None:
        with self._view.lock:
            record = self._index.get(deletion_id, now_ms)
        if record is None:
            self.catch_up()
            with self._view.lock:
                record = self._index.get(deletion_id, now_ms)
        return record

    def count(self, model: str, day: int) -> int:
        """Requests of ``model`` on UTC day ``day``, after reading the topic to its end."""
        self.catch_up()
        with self._view.lock:
            return self._index.count(model, day)

    def add(self, record: Mapping[str, Any]) -> None:
        """A request this process just produced (the view would read it back anyway)."""
        with self._view.lock:
            self._index.apply(str(record["deletion_id"]).encode(), encode_request(record))

    def withdraw(self, deletion_id: str) -> None:
        with self._view.lock:
            self._index.apply(deletion_id.encode(), None)

    def catch_up(self, timeout_s: float = 10.0) -> None:
        self._view.catch_up(timeout_s)
        now_ms = int(time.time() * 1000)
        if now_ms // DAY_MS != self._pruned_day:  # once a day is enough
            with self._view.lock:
                self._index.prune(now_ms)
            self._pruned_day = now_ms // DAY_MS

    def close(self) -> None:
        self._view.close()
