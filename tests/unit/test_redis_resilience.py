"""The pure parts of surviving Redis (SPEC §5): backoff and outage logging, the projection's
markers, the deletion-requests index, and the rate-limit counter rebuilt from it."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING

from driftline.agents.projection import lost_writes, resume_offset
from driftline.agents.serving import _bin_of
from driftline.api.deletions import deletion_messages, deletion_record
from driftline.api.rate_limit import DeleteRateLimit, day_window
from driftline.api.requests import parse_delete
from driftline.topics.deletion_requests import (
    DAY_MS,
    DeletionRequestIndex,
    created_ms,
    encode_request,
)
from driftline.topics.outages import BACKOFF_MAX_S, OutageLog, backoff_s

NOON = datetime(2026, 11, 22, 12, tzinfo=UTC)
NOON_MS = int(NOON.timestamp() * 1000)


# --- backoff and the outage log ------------------------------------------------------------


def test_backoff_doubles_from_a_tenth_of_a_second_up_to_its_cap() -> None:
    waits = [backoff_s(n) for n in range(0, 8)]
    assert waits[:5] == [0.0, 0.1, 0.2, 0.4, 0.8]
    assert waits[-1] == BACKOFF_MAX_S
    assert backoff_s(10_000) == BACKOFF_MAX_S  # no overflow however long it lasts


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_logged_when_it_starts_once_a_minute_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = OutageLog(logging.getLogger("t"), "serving", "Redis", "bins wait", clock)
    caplog.set_level(logging.INFO, "t")
    outage.succeeded()
    assert not caplog.records  # nothing to say while all is well
    error = redis.ConnectionError("Connection refused")
    for _ in range(600):  # ten minutes of retries, one every second
        outage.failed(error)
        clock.now += 1
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == (
        "serving: Redis is unavailable (Connection refused); bins wait, retrying"
    )
    assert len(messages) == 10  # the start, then one a minute
    assert messages[1].startswith("serving: Redis still unavailable after 60 s")
    assert outage.ongoing
    outage.succeeded()
    outage.succeeded()
    assert caplog.records[-1].getMessage() == (
        "serving: Redis answers again after 600.0 s (600 failed attempts)"
    )
    assert len(caplog.records) == 11
    assert not outage.ongoing
    assert outage.failed(error) == backoff_s(1)  # a new outage starts from the short wait


# --- the projection's markers ----------------------------------------------------------------


def test_redis_lost_writes_when_its_marker_is_gone_or_behind() -> None:
    assert lost_writes(None, 0)  # wiped or replaced, even before any write
    assert lost_writes(5, 9)  # restored from an older snapshot
    assert not lost_writes(9, 9)
    assert not lost_writes(12, 9)  # another writer is ahead: nothing lost here
    assert resume_offset(None) == OFFSET_BEGINNING
    assert resume_offset(0) == OFFSET_BEGINNING
    assert resume_offset(17) == 17


def test_metrics_keys_name_a_model_and_an_hour() -> None:
    assert _bin_of(b"shop/churn/490000") == ("shop/churn", 490_000)
    assert _bin_of(b"shop/a/b/12") == ("shop/a/b", 12)
    for foreign in (None, b"no-hour/", b"shop/churn/x1", b"12"):
        assert _bin_of(foreign) is None


# --- the deletion-requests index ------------------------------------------------------------


def record(deletion_id: str, model: str = "shop/fraud", at: datetime = NOON) -> dict[str, Any]:
    project_id, model_id = model.split("/")
    request = parse_delete({"project_id": project_id, "model_id": model_id,
                            "event_ids": ["a", "b"]})  # fmt: skip
    messages = deletion_messages(request, deletion_id, 4, 262_144)
    return deletion_record(request, deletion_id, messages, at)


def apply(index: DeletionRequestIndex, found: dict[str, Any]) -> None:
    index.apply(found["deletion_id"].encode(), encode_request(found))


def test_a_request_record_says_what_was_asked_and_when() -> None:
    found = record("d1")
    assert found["model"] == "shop/fraud"
    assert found["kind"] == "ids"
    assert found["events"] == 2
    assert sum(found["expected"].values()) >= 1
    assert found["created"] == "2026-11-22T12:00:00.000+00:00"
    assert created_ms(found) == NOON_MS
    with pytest.raises(ValueError, match="needs created"):
        encode_request({k: v for k, v in found.items() if k != "created"})


def test_the_index_counts_a_models_requests_per_utc_day_and_forgets_withdrawn_ones() -> None:
    index = DeletionRequestIndex()
    day = NOON_MS // DAY_MS
    for n in range(3):
        apply(index, record(f"d{n}"))
    apply(index, record("d0"))  # read twice (the API adds what it produced, then reads it)
    apply(index, record("other", model="shop/churn"))
    apply(index, record("yesterday", at=NOON - timedelta(days=1)))
    apply(index, record("late", at=NOON.replace(hour=23, minute=59, second=59)))
    assert index.count("shop/fraud", day) == 4
    assert index.count("shop/fraud", day - 1) == 1
    assert index.count("shop/churn", day) == 1
    assert index.count("shop/none", day) == 0

    index.apply(b"d1", None)  # withdrawn: the broker refused its commands
    assert index.count("shop/fraud", day) == 3
    assert index.get("d1", NOON_MS) is None
    assert index.get("d2", NOON_MS)["deletion_id"] == "d2"  # type: ignore[index]
    assert len(index) == 5


def test_the_index_ignores_foreign_records_and_forgets_after_thirty_days() -> None:
    index = DeletionRequestIndex()
    for key, value in [(None, b"{}"), (b"x", b"not json"), (b"x", b"[1]"),
                       (b"x", orjson.dumps({"deletion_id": "x"})),
                       (b"x", orjson.dumps({**record("x"), "created": "yesterday"}))]:  # fmt: skip
        index.apply(key, value)
    assert len(index) == 0
    apply(index, record("old", at=NOON - timedelta(days=30)))
    apply(index, record("recent", at=NOON - timedelta(days=29)))
    assert index.get("old", NOON_MS) is None
    assert index.get("recent", NOON_MS) is not None
    index.prune(NOON_MS)
    assert len(index) == 1
    assert index.count("shop/fraud", NOON_MS // DAY_MS - 30) == 0


# --- the rate-limit counter, rebuilt from Kafka's count when Redis lost it ------------------


class FakeRedis:
    """The few commands the rate limit uses, on a dict (expiry is not modelled)."""

    def __init__(self) -> None:
        self.data: dict[str, int] = {}
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise redis.ConnectionError("Connection refused")

    async def exists(self, key: str) -> int:
        self._check()
        return int(key in self.data)

    async def get(self, key: str) -> bytes | None:
        self._check()
        return None if key not in self.data else str(self.data[key]).encode()

    async def set(self, key: str, value: int, nx: bool = False, exat: int = 0) -> bool:
        self._check()
        if nx and key in self.data:
            return False
        self.data[key] = int(value)
        return True

    async def decr(self, key: str) -> int:
        self._check()
        self.data[key] = self.data.get(key, 0) - 1
        return self.data[key]

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)


class FakePipeline:
    def __init__(self, client: FakeRedis) -> None:
        self._client = client
        self._incr: list[str] = []

    def incr(self, key: str) -> None:
        self._incr.append(key)

    def expireat(self, key: str, when: int) -> None:
        pass

    async def execute(self) -> list[int]:
        self._client._check()
        results = []
        for key in self._incr:
            self._client.data[key] = self._client.data.get(key, 0) + 1
            results.append(self._client.data[key])
        return [*results, True]


def test_a_lost_counter_starts_again_from_the_requests_kafka_holds_for_the_day() -> None:
    fake = FakeRedis()
    in_kafka: dict[tuple[str, int], int] = {}
    asked: list[tuple[str, int]] = []

    def accepted_on(model: str, day: int) -> int:
        asked.append((model, day))
        return in_kafka.get((model, day), 0)

    limit = DeleteRateLimit(fake, "p", 3, accepted_on)  # type: ignore[arg-type]
    day, _ = day_window(NOON)

    async def scenario() -> None:
        for expected in (1, 2):
            window = await limit.take("shop/fraud", NOON)
            assert (window.used, window.exceeded) == (expected, False)
            in_kafka[("shop/fraud", day)] = expected  # the API produced the request
        assert asked == [("shop/fraud", day)]  # only the missing key asked Kafka
        fake.data.clear()  # FLUSHALL
        assert (await limit.peek("shop/fraud", NOON)).remaining == 1
        third = await limit.take("shop/fraud", NOON)
        assert (third.used, third.remaining, third.exceeded) == (3, 0, False)
        in_kafka[("shop/fraud", day)] = 3
        fourth = await limit.take("shop/fraud", NOON)
        assert fourth.exceeded
        assert "Retry-After" in fourth.headers()
        assert fake.data[f"p:delete-requests:shop/fraud:{day}"] == 3  # the refusal taken back

        fake.down = True  # peek answers from Kafka; take needs Redis
        assert (await limit.peek("shop/fraud", NOON)).remaining == 0
        with pytest.raises(redis.ConnectionError):
            await limit.take("shop/fraud", NOON)

    asyncio.run(scenario())
