"""Messages within the documented limits that once crash-looped a worker (issue: unattended
operation, items 1-3). Each is dead-lettered whole with its reason, or stored, and every
other message of every model goes on."""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
import pytest

from driftline.client import Driftline
from driftline.settings import Settings
from driftline.topics.catalog import Topics
from driftline.topics.dead_letters import read_dead_letters
from driftline.topics.messages import encode_ingest, ingest_key
from driftline.topics.producer import CheckedProducer
from driftline.topics.waiting import wait_until
from tests.support.models import FRAUD_SPEC, T0
from tests.support.pipeline import stored_events, wait_for_lag_zero
from tests.support.values import nested

pytestmark = pytest.mark.integration

OTHER = {**FRAUD_SPEC, "model_id": "other"}


def produce(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    producer = CheckedProducer(settings.bootstrap_servers)
    for key, value in messages:
        producer.produce(Topics.for_settings(settings).ingest.name, key, value)
    producer.flush()


def insert(model: str, event_id: str, columns: dict[str, Any]) -> tuple[bytes, bytes]:
    return (
        ingest_key("shop", model, event_id),
        encode_ingest("insert", "shop", model, event_id, columns, T0),
    )


def large_updates(event_id: str) -> list[tuple[bytes, bytes]]:
    """Five updates of ~200 KB each (under DRIFTLINE_MAX_EVENT_BYTES) for one event."""
    return [
        (ingest_key("shop", "fraud", event_id),
         encode_ingest("update", "shop", "fraud", event_id, {"uri": f"{i}" * 200_000}))
        for i in range(5)
    ]  # fmt: skip


def test_a_value_nested_300_deep_is_dead_lettered_and_every_model_goes_on(
    settings: Settings, start_worker: Any
) -> None:
    start_worker()
    with Driftline(settings) as client:
        client.register_model(FRAUD_SPEC)
        client.register_model(OTHER)
    # 734 bytes, valid JSON, within every limit: orjson reads 1023 levels, writes 254.
    deep = json.dumps(
        {"op": "insert", "project_id": "shop", "model_id": "fraud", "event_id": "deep",
         "event": {"age": 3, "uri": nested(300)}}
    ).encode()  # fmt: skip
    assert len(deep) < 1000
    produce(
        settings,
        [insert("fraud", "before", {"age": 1}), (ingest_key("shop", "fraud", "deep"), deep),
         insert("fraud", "after", {"age": 2}), insert("other", "o1", {"age": 4})],
    )  # fmt: skip
    wait_for_lag_zero(settings)

    assert set(stored_events(settings)) == {"before", "after", "o1"}
    (letter,) = read_dead_letters(settings.bootstrap_servers,
                                  Topics.for_settings(settings).dead_letters.name)  # fmt: skip
    assert letter.value == deep
    assert "column 'uri' holds a value nested more than 64 levels deep" in letter.reason


def test_large_updates_waiting_for_their_insert_never_outgrow_a_record(
    settings: Settings, start_worker: Any
) -> None:
    """Five 200 KB updates for an id not inserted yet: once one changelog record of ~2 MB."""
    start_worker(settings.with_overrides(parked_update_timeout_s=600.0))
    with Driftline(settings) as client:
        client.register_model(FRAUD_SPEC)
    updates = large_updates("late")
    assert all(len(value) < settings.max_event_bytes for _, value in updates)
    produce(settings, [*updates, insert("fraud", "meanwhile", {"age": 1})])
    wait_for_lag_zero(settings)
    assert set(stored_events(settings)) == {"meanwhile"}

    produce(settings, [insert("fraud", "late", {"age": 7, "uri": None})])
    wait_for_lag_zero(settings)
    stored = stored_events(settings)
    assert stored["late"][1] == {"age": 7, "uri": "4" * 200_000}  # the last update wins


def test_waiting_updates_that_expire_are_dead_lettered_whole(
    settings: Settings, start_worker: Any
) -> None:
    start_worker(settings.with_overrides(parked_update_timeout_s=2.0))
    with Driftline(settings) as client:
        client.register_model(FRAUD_SPEC)
    updates = large_updates("ghost")
    produce(settings, updates)
    dead_letters = Topics.for_settings(settings).dead_letters.name
    wait_until(
        lambda: len(read_dead_letters(settings.bootstrap_servers, dead_letters)) == 5,
        timeout_s=60,
        what="five expired updates",
    )
    letters = read_dead_letters(settings.bootstrap_servers, dead_letters)
    assert sorted(letter.value or b"" for letter in letters) == sorted(v for _, v in updates)
    assert all("its insert never arrived" in letter.reason for letter in letters)


def test_a_message_just_under_the_brokers_limit_is_dead_lettered_byte_for_byte(
    settings: Settings, start_worker: Any
) -> None:
    """1,040,024 bytes: the broker takes it; its dead letter once could not be produced."""
    start_worker()
    with Driftline(settings) as client:
        client.register_model(FRAUD_SPEC)
    big = encode_ingest("insert", "shop", "fraud", "big", {"uri": "x" * 1_039_934})
    assert len(big) == 1_040_024
    produce(
        settings,
        [
            insert("fraud", "a", {"age": 1}),
            (ingest_key("shop", "fraud", "big"), big),
            insert("fraud", "b", {"age": 2}),
        ],
    )
    wait_for_lag_zero(settings)
    assert set(stored_events(settings)) == {"a", "b"}
    (letter,) = read_dead_letters(settings.bootstrap_servers,
                                  Topics.for_settings(settings).dead_letters.name)  # fmt: skip
    assert letter.value == big
    assert f"exceeds the limit of {settings.max_event_bytes} bytes" in letter.reason
    assert orjson.loads(letter.value)["event_id"] == "big"


def test_an_update_whose_insert_is_still_in_the_backlog_is_not_timed_out(
    settings: Settings, start_worker: Any
) -> None:
    """Once the tick timed waiting updates by the wall clock: a worker that came back to a
    backlog older than the timeout (after a broker outage, a crash, a slow start) dead-
    lettered updates whose insert was right behind them, unread."""
    settings = settings.with_overrides(
        ingest_partitions=1, parked_update_timeout_s=2.0, batch_max_messages=20
    )
    with Driftline(settings) as client:
        client.register_model(FRAUD_SPEC)
    label = encode_ingest("update", "shop", "fraud", "early", {"is_fraud": 1})
    fillers = [insert("fraud", f"f{i}", {"age": i % 90}) for i in range(20_000)]
    produce(settings, [(ingest_key("shop", "fraud", "early"), label), *fillers,
                       insert("fraud", "early", {"age": 7})])  # fmt: skip
    time.sleep(3.0)  # the backlog's age, past the timeout: the scenario, not a wait
    # Batches of 20: the update is applied at once, its insert some seconds and ticks later.
    start_worker(settings)
    wait_for_lag_zero(settings, timeout_s=240)

    assert stored_events(settings)["early"] == (T0, {"age": 7, "is_fraud": 1})
    letters = read_dead_letters(settings.bootstrap_servers,
                                Topics.for_settings(settings).dead_letters.name)  # fmt: skip
    assert [letter.reason for letter in letters] == []
