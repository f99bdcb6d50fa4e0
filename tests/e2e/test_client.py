"""The Python client and CLI on the real broker and worker: what a user sends is what is stored."""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from driftline.client import (
    Driftline,
    DroppedFieldsWarning,
    InvalidEventError,
    ModelConflictError,
    UnknownModelError,
)
from driftline.settings import Settings
from driftline.stack.kafka import free_port
from driftline.state.spec import InvalidSpecError, ModelSpec
from driftline.topics.catalog import Topics
from driftline.topics.producer import CheckedProducer, DeliveryError
from driftline.topics.reading import read_topic
from tests.support.models import FRAUD_SPEC, T0
from tests.support.pipeline import stored_events, wait_for_lag_zero

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

HOUR = 3_600_000


def utc_ms(*when: int, ms: int = 0) -> int:
    """UTC milliseconds of (year, month, day, hour, minute, second), by plain arithmetic."""
    return calendar.timegm(when) * 1000 + ms


# Three events, each with an empty value somewhere; the second and third have no label.
BASE: list[dict[str, Any]] = [
    {"age": 30, "amount": 12.5, "country": "fr", "score": 0.91, "is_fraud": 1,
     "blocked": True, "uri": "s3://b/1"},
    {"age": 41, "amount": 300.25, "country": None, "score": 0.12, "is_fraud": None,
     "blocked": False, "uri": "s3://b/2"},
    {"age": 19, "amount": 0.5, "country": "us", "score": 0.55, "is_fraud": None,
     "blocked": False, "uri": None},
]  # fmt: skip
MS_TIMES = [T0, T0 + HOUR + 17, T0 + 26 * HOUR + 999]
# ISO-8601 with offsets, and the UTC milliseconds each one means.
AWARE_TIMES = [
    ("2025-06-15T12:30:00.250+02:00", utc_ms(2025, 6, 15, 10, 30, 0, ms=250)),
    ("2025-06-15T03:00:00-05:00", utc_ms(2025, 6, 15, 8, 0, 0)),
    ("2025-06-16T00:15:00Z", utc_ms(2025, 6, 16, 0, 15, 0)),
]


def stored_after_lag_zero(settings: Settings) -> dict[str, tuple[int, dict[str, Any]]]:
    wait_for_lag_zero(settings, timeout_s=60)
    return stored_events(settings)


def ingest_keys(settings: Settings) -> list[bytes]:
    """Keys of every message in the ingest topic (what the client actually sent)."""
    topic = Topics.for_settings(settings).ingest.name
    return [message.key() for message in read_topic(settings.bootstrap_servers, topic)]


@pytest.fixture
def client(settings: Settings) -> Iterator[Driftline]:
    """A client with the test model registered (no worker: only the broker)."""
    with Driftline(settings) as driftline:
        driftline.register_model(FRAUD_SPEC)
        yield driftline


@pytest.fixture
def worker(start_worker: Callable[..., Any]) -> Any:
    return start_worker()


# --- 1. batches store exactly the rows given ---------------------------------------------


def _ms_frame() -> pd.DataFrame:
    rows = [
        {"event_id": f"m{i}", "timestamp": ts, **base}
        for i, (ts, base) in enumerate(zip(MS_TIMES, BASE, strict=True))
    ]
    return pd.DataFrame(rows)


def _aware_frame() -> pd.DataFrame:
    """Timestamps as a timezone-aware datetime column (Europe/Paris: +02:00 in June)."""
    frame = pd.DataFrame(
        [{"event_id": f"z{i}", **base} for i, base in enumerate(BASE)],
    )
    isos = [iso for iso, _ in AWARE_TIMES]
    frame["timestamp"] = pd.to_datetime(isos, format="ISO8601", utc=True).tz_convert("Europe/Paris")
    return frame


def _dict_sources(tmp_path: Path) -> tuple[Any, Any]:
    ms_rows = [
        {"event_id": f"m{i}", "timestamp": ts, **base}
        for i, (ts, base) in enumerate(zip(MS_TIMES, BASE, strict=True))
    ]
    # Aware datetimes for two rows, an ISO string with offset for the third.
    aware_rows = [
        {"event_id": "z0", "timestamp": datetime.fromisoformat(AWARE_TIMES[0][0]), **BASE[0]},
        {"event_id": "z1", "timestamp": datetime.fromisoformat(AWARE_TIMES[1][0]), **BASE[1]},
        {"event_id": "z2", "timestamp": AWARE_TIMES[2][0], **BASE[2]},
    ]
    return ms_rows, aware_rows


def _frame_sources(tmp_path: Path) -> tuple[Any, Any]:
    return _ms_frame(), _aware_frame()


def _csv_sources(tmp_path: Path) -> tuple[Any, Any]:
    ms_path, aware_path = tmp_path / "ms.csv", tmp_path / "aware.csv"
    _ms_frame().to_csv(ms_path, index=False)
    aware = _aware_frame()
    aware["timestamp"] = [iso for iso, _ in AWARE_TIMES]  # strings with mixed offsets
    aware.to_csv(aware_path, index=False)
    assert ",," in ms_path.read_text()  # the empty labels really are empty cells
    return ms_path, str(aware_path)


def _parquet_sources(tmp_path: Path) -> tuple[Any, Any]:
    ms_path, aware_path = tmp_path / "ms.parquet", tmp_path / "aware.parquet"
    _ms_frame().to_parquet(ms_path, index=False)
    _aware_frame().to_parquet(aware_path, index=False)
    return ms_path, str(aware_path)


SOURCES = {
    "dicts": _dict_sources,
    "dataframe": _frame_sources,
    "csv": _csv_sources,
    "parquet": _parquet_sources,
}


@pytest.mark.parametrize("kind", list(SOURCES))
def test_batch_stores_exactly_the_rows_given(
    kind: str, settings: Settings, client: Driftline, worker: Any, tmp_path: Path
) -> None:
    ms_source, aware_source = SOURCES[kind](tmp_path)

    ms_ids = client.publish_events_batch("shop", "fraud", ms_source)
    aware_ids = client.publish_events_batch("shop", "fraud", aware_source)

    assert ms_ids == ["m0", "m1", "m2"]
    assert aware_ids == ["z0", "z1", "z2"]
    expected = {f"m{i}": (MS_TIMES[i], BASE[i]) for i in range(3)}
    expected |= {f"z{i}": (AWARE_TIMES[i][1], BASE[i]) for i in range(3)}
    stored = stored_after_lag_zero(settings)
    assert stored == expected
    for event_id in ("m1", "m2", "z1", "z2"):
        assert stored[event_id][1]["is_fraud"] is None  # null, not NaN, 0 or ""
    assert stored["m1"][1]["country"] is None
    assert stored["z2"][1]["uri"] is None


def test_custom_id_and_timestamp_columns_are_used(
    settings: Settings, client: Driftline, worker: Any, api_settings: Settings, tmp_path: Path
) -> None:
    client.register_model(
        {
            "project_id": "shop",
            "model_id": "custom",
            "inputs": ["age"],
            "outputs": ["score"],
            "targets": ["label"],
            # A column named like the default time column is plain metadata here.
            "metadata": ["timestamp"],
            "event_id_col": "request_id",
            "event_ts_col": "served_at",
        }
    )
    path = tmp_path / "custom.csv"
    path.write_text(
        "request_id,served_at,age,score,label,timestamp\n"
        f"1001,{T0},33,0.7,1,legacy-a\n"
        f"req-2,{T0 + HOUR},44,0.2,,legacy-b\n"
    )

    ids = client.publish_events_batch("shop", "custom", path)

    assert ids == ["1001", "req-2"]
    assert stored_after_lag_zero(settings) == {
        "1001": (T0, {"age": 33, "score": 0.7, "label": 1, "timestamp": "legacy-a"}),
        "req-2": (T0 + HOUR, {"age": 44, "score": 0.2, "label": None, "timestamp": "legacy-b"}),
    }
    with Driftline(api_settings) as reader:
        body = reader.get_event("shop", "custom", "1001")
    assert body is not None
    assert body["event_timestamp"] == T0


def test_an_insert_with_a_column_the_spec_lacks_warns_and_stores_the_rest(
    settings: Settings, client: Driftline, worker: Any
) -> None:
    """The worker drops the column (SPEC §2: the response says which fields were dropped);
    the client says so before sending, as POST /v1/events does in ``dropped_fields``."""
    with pytest.warns(DroppedFieldsWarning, match="no such column; dropped: colour"):
        published = client.publish_event(
            "shop", "fraud", {**BASE[0], "colour": "red"}, event_id="c1", event_timestamp=T0
        )
    assert published.dropped_fields == ("colour",)
    rows = [{**BASE[1], "event_id": "c2", "timestamp": T0, "colour": "blue", "size": 3}]
    with pytest.warns(DroppedFieldsWarning, match="dropped: colour, size"):
        ids = client.publish_events_batch("shop", "fraud", rows)
    assert ids == ["c2"]
    stored = stored_after_lag_zero(settings)
    assert stored["c1"] == (T0, BASE[0])
    assert stored["c2"] == (T0, BASE[1])


# --- 2. updates from a file of labels ------------------------------------------------------


def test_batch_update_from_csv_changes_only_targets_and_metadata(
    settings: Settings, client: Driftline, worker: Any, tmp_path: Path
) -> None:
    inserts = [
        {"event_id": f"e{i}", "timestamp": T0 + i * HOUR, **BASE[i], "is_fraud": None}
        for i in range(3)
    ]
    client.publish_events_batch("shop", "fraud", inserts)
    labels = tmp_path / "labels.csv"
    # age and score are an input and an output: not updatable, to be dropped.
    labels.write_text(
        "event_id,is_fraud,uri,age,score\ne0,1,s3://fixed/0,99,0.0\ne2,0,s3://fixed/2,98,1.0\n"
    )

    with pytest.warns(DroppedFieldsWarning) as caught:
        ids = client.publish_events_batch("shop", "fraud", labels, update_event=True)

    (warning,) = [w for w in caught if issubclass(w.category, DroppedFieldsWarning)]
    message = str(warning.message)
    assert "age" in message
    assert "score" in message
    assert "is_fraud" not in message
    assert "uri" not in message
    assert ids == ["e0", "e2"]
    assert all(set(event_id.dropped_fields) == {"age", "score"} for event_id in ids)
    expected = {f"e{i}": (T0 + i * HOUR, {**BASE[i], "is_fraud": None}) for i in range(3)}
    expected["e0"][1].update(is_fraud=1, uri="s3://fixed/0")
    expected["e2"][1].update(is_fraud=0, uri="s3://fixed/2")
    assert stored_after_lag_zero(settings) == expected


# --- 3. single events: generated ids and default times ------------------------------------


def test_publish_event_generates_an_id_and_stamps_the_current_time(
    settings: Settings, client: Driftline, worker: Any, api_settings: Settings
) -> None:
    before = time.time() * 1000
    generated = client.publish_event("shop", "fraud", {"age": 52, "score": 0.3})
    paris = timezone(timedelta(hours=2))
    given = client.publish_event(
        "shop",
        "fraud",
        {"age": 53, "score": 0.4},
        event_id="given-1",
        event_timestamp=datetime(2025, 6, 15, 12, 0, tzinfo=paris),
    )
    wait_for_lag_zero(settings, timeout_s=60)

    assert isinstance(generated, str)
    assert generated
    assert str(uuid.UUID(generated)) == generated  # a real, unique id
    assert given == "given-1"
    reader = Driftline(api_settings)  # reads go through the API
    body = reader.get_event("shop", "fraud", generated)
    assert body is not None
    assert body["event_id"] == generated
    assert body["event"] == {"age": 52, "score": 0.3}
    assert abs(body["event_timestamp"] - before) < 60_000
    body = reader.get_event("shop", "fraud", "given-1")
    assert body is not None
    assert body["event_timestamp"] == utc_ms(2025, 6, 15, 10, 0, 0)
    assert reader.get_event("shop", "fraud", "never-published") is None
    reader.close()


# --- 4. clear errors before anything is sent -----------------------------------------------


def test_update_without_id_is_refused(settings: Settings, client: Driftline) -> None:
    with pytest.raises(InvalidEventError, match="update needs an event id"):
        client.publish_event("shop", "fraud", {"is_fraud": 1}, update_event=True)
    with pytest.raises(InvalidEventError, match=r"row 1: an update needs an event id"):
        client.publish_events_batch(
            "shop", "fraud", [{"event_id": "x", "is_fraud": 1}, {"is_fraud": 0}], update_event=True
        )
    # The first row of the batch was valid and went out; the single update never did.
    assert ingest_keys(settings) == [b"shop/fraud/x"]


@pytest.mark.parametrize("event", [[("age", 1)], "age=1", None, 42])
def test_an_event_that_is_not_a_dict_is_refused(
    settings: Settings, client: Driftline, event: Any
) -> None:
    with pytest.raises(InvalidEventError, match="must be a dict"):
        client.publish_event("shop", "fraud", event)
    assert ingest_keys(settings) == []


@pytest.mark.parametrize(
    ("timestamp", "problem"),
    [
        (datetime(2025, 6, 15, 12, 0), "no time zone"),  # noqa: DTZ001
        ("2025-06-15 12:00:00", "no time zone"),
        (True, "must not be a boolean"),
        ("not a time", 'cannot read "not a time" as a timestamp'),
        (1.5, "must be UTC milliseconds"),
        (-1, "from 1970 on"),
        ([T0], "must be UTC milliseconds"),
    ],
)
def test_a_timestamp_of_the_wrong_type_is_refused(
    settings: Settings, client: Driftline, timestamp: Any, problem: str
) -> None:
    with pytest.raises(InvalidEventError, match=problem):
        client.publish_event("shop", "fraud", {"age": 1}, event_timestamp=timestamp)
    # The same value in the time column of a row.
    with pytest.raises(InvalidEventError, match=problem):
        client.publish_event("shop", "fraud", {"age": 1, "timestamp": timestamp})
    assert ingest_keys(settings) == []


def test_a_value_without_json_form_is_refused(settings: Settings, client: Driftline) -> None:
    with pytest.raises(InvalidEventError, match="column 'uri' has a value of type object"):
        client.publish_event("shop", "fraud", {"age": 1, "uri": object()})
    with pytest.raises(InvalidEventError, match="column 'uri' has a value of type set"):
        client.publish_event("shop", "fraud", {"age": 1, "uri": {1, 2}})
    assert ingest_keys(settings) == []


def test_an_unknown_model_is_refused(settings: Settings, client: Driftline) -> None:
    with pytest.raises(UnknownModelError, match="shop/nope is not registered"):
        client.publish_event("shop", "nope", {"age": 1})
    with pytest.raises(UnknownModelError, match="shop/nope"):
        client.publish_events_batch("shop", "nope", [{"age": 1}])
    with pytest.raises(UnknownModelError, match="shop/nope"):
        client.delete_events("shop", "nope", ["a"])
    assert ingest_keys(settings) == []


def test_a_model_is_registered_once(client: Driftline) -> None:
    """The same registration again is harmless; another spec or baseline is refused, since
    the bins already hold contributions computed with the first (SPEC §1)."""
    client.register_model(FRAUD_SPEC)
    with pytest.raises(ModelConflictError, match="already registered with another spec"):
        client.register_model({**FRAUD_SPEC, "metadata": ["uri", "extra"]})
    with pytest.raises(ModelConflictError, match="register the new version under a new"):
        client.register_model(
            FRAUD_SPEC, [{"age": 30, "amount": 2.0, "country": "fr", "score": 0.5}]
        )
    assert client.model("shop", "fraud") == ModelSpec.from_dict(FRAUD_SPEC)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"targets": ["age"]}, "column 'age' is listed in both inputs and targets"),
        ({"task": "multiclass_classification"}, "multiclass model needs its class list"),
        (
            {"task": "multiclass_classification", "outputs": ["p_a", "p_b"], "classes": ["a"]},
            "got 1 classes and 2 outputs",
        ),
        ({"task": "ranking"}, "task must be one of"),
        ({"outputs": []}, "at least one output column"),
        ({"model_id": "a/b"}, "'model_id' must be a non-empty string without '/'; got"),
    ],
)
def test_an_invalid_spec_is_refused(
    settings: Settings, client: Driftline, change: dict[str, Any], problem: str
) -> None:
    bad = {**FRAUD_SPEC, "model_id": "bad", **change}
    with pytest.raises(InvalidSpecError, match=problem):
        client.register_model(bad)
    with pytest.raises(UnknownModelError):
        client.model("shop", bad["model_id"])


def test_a_bad_row_names_its_number_and_the_rows_before_it_are_stored(
    settings: Settings, client: Driftline, worker: Any
) -> None:
    rows = [
        {"event_id": "b0", "timestamp": T0, "age": 20, "score": 0.1},
        {"event_id": "b1", "timestamp": T0 + 1, "age": 21, "score": 0.2},
        {"event_id": "b2", "timestamp": "yesterday-ish", "age": 22, "score": 0.3},
        {"event_id": "b3", "timestamp": T0 + 3, "age": 23, "score": 0.4},
    ]
    with pytest.raises(InvalidEventError, match=r'^row 2: cannot read "yesterday-ish"'):
        client.publish_events_batch("shop", "fraud", rows)
    with pytest.raises(InvalidEventError, match=r"^row 1: column 'age' has a value of type"):
        client.publish_events_batch(
            "shop", "fraud", [{"event_id": "c0", "age": 1}, {"event_id": "c1", "age": object()}]
        )

    assert stored_after_lag_zero(settings) == {
        "b0": (T0, {"age": 20, "score": 0.1}),
        "b1": (T0 + 1, {"age": 21, "score": 0.2}),
        "c0": (pytest.approx(time.time() * 1000, abs=60_000), {"age": 1}),
    }


# --- 5. delivery failures are raised --------------------------------------------------------

# A 1 s delivery timeout, and librdkafka's connection-refused log lines silenced.
DEAD_BROKER_CONFIG: dict[str, Any] = {"message.timeout.ms": 1000, "log_level": 0}


def test_checked_producer_raises_delivery_error_when_nothing_listens() -> None:
    producer = CheckedProducer(f"127.0.0.1:{free_port()}", **DEAD_BROKER_CONFIG)
    producer.produce("anything", b"shop/fraud/k1", b"{}")
    started = time.monotonic()
    with pytest.raises(DeliveryError) as raised:
        producer.flush(timeout_s=15)
    assert time.monotonic() - started < 10
    assert [key for key, _ in raised.value.failures] == [b"shop/fraud/k1"]
    assert "1 message(s) were not delivered" in str(raised.value)
    producer.flush(timeout_s=1)  # the failure was reported once, not again


def test_client_raises_delivery_error_when_the_broker_is_gone(client: Driftline) -> None:
    # The registry is read from the real broker; the events go to a port where nothing listens.
    client._producer = CheckedProducer(f"127.0.0.1:{free_port()}", **DEAD_BROKER_CONFIG)
    with pytest.raises(DeliveryError) as raised:
        client.publish_event("shop", "fraud", {"age": 1}, event_id="lost-1")
    assert [key for key, _ in raised.value.failures] == [b"shop/fraud/lost-1"]
    with pytest.raises(DeliveryError) as raised:
        client.publish_events_batch("shop", "fraud", [{"event_id": f"lost-{i}"} for i in (2, 3)])
    assert sorted(key for key, _ in raised.value.failures) == [
        b"shop/fraud/lost-2",
        b"shop/fraud/lost-3",
    ]


# --- 6. the CLI ----------------------------------------------------------------------------


def run_cli(settings: Settings, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "driftline.cli", *map(str, args)],
        env={**os.environ, **settings.to_env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def error_lines(stderr: str) -> list[str]:
    """Lines of stderr other than tqdm's progress bar."""
    lines = [line.split("\r")[-1] for line in stderr.splitlines()]
    return [line for line in lines if line.strip() and "event/s" not in line]


def test_cli_registers_publishes_updates_and_shows_events(
    settings: Settings, worker: Any, api_settings: Settings, tmp_path: Path
) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(FRAUD_SPEC))
    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,timestamp,age,amount,country,score,is_fraud,blocked,uri\n"
        "c0,2025-06-15T15:06:40Z,30,1.5,fr,0.9,,True,s3://c/0\n"
        "c1,2025-06-15T10:00:00+01:00,31,2.5,,0.1,,False,\n"
    )
    labels = tmp_path / "labels.csv"
    labels.write_text("event_id,is_fraud,score\nc1,1,0.99\n")

    registered = run_cli(settings, "register", spec_file)
    published = run_cli(settings, "publish", "shop", "fraud", events)
    updated = run_cli(settings, "publish", "shop", "fraud", labels, "--update")

    assert registered.returncode == 0, registered.stderr
    assert "registered shop/fraud" in registered.stdout
    assert published.returncode == 0, published.stderr
    assert "published 2 events" in published.stdout
    assert updated.returncode == 0, updated.stderr
    assert "published 1 updates" in updated.stdout
    assert "dropped: score" in updated.stderr
    row0 = {"age": 30, "amount": 1.5, "country": "fr", "score": 0.9, "is_fraud": None,
            "blocked": True, "uri": "s3://c/0"}  # fmt: skip
    row1 = {"age": 31, "amount": 2.5, "country": None, "score": 0.1, "is_fraud": 1,
            "blocked": False, "uri": None}  # fmt: skip
    assert stored_after_lag_zero(settings) == {
        "c0": (T0, row0),
        "c1": (utc_ms(2025, 6, 15, 9, 0, 0), row1),
    }

    shown = run_cli(api_settings, "show", "shop", "fraud", "c1")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {
        "project_id": "shop",
        "model_id": "fraud",
        "event_id": "c1",
        "event_timestamp": utc_ms(2025, 6, 15, 9, 0, 0),
        "event": row1,
    }
    missing = run_cli(api_settings, "show", "shop", "fraud", "nope")
    assert missing.returncode == 1
    assert "no event nope in shop/fraud" in missing.stderr


def test_cli_reports_a_bad_file_in_one_line(
    settings: Settings, client: Driftline, tmp_path: Path
) -> None:
    bad_row = tmp_path / "bad_row.csv"
    bad_row.write_text("event_id,timestamp,age\nok,2025-06-15T15:06:40Z,1\nbad,last tuesday,2\n")
    wrong_type = tmp_path / "events.txt"
    wrong_type.write_text("event_id,age\na,1\n")
    labels = tmp_path / "labels.csv"
    labels.write_text("is_fraud\n1\n")
    cases = [
        (("publish", "shop", "fraud", bad_row), 'row 1: cannot read "last tuesday"'),
        (("publish", "shop", "fraud", wrong_type), "unsupported file type '.txt'"),
        (("publish", "shop", "nope", bad_row), "model shop/nope is not registered"),
        (("publish", "shop", "fraud", labels, "--update"), "row 0: an update needs an event id"),
    ]
    for args, problem in cases:
        result = run_cli(settings, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        (line,) = error_lines(result.stderr)
        assert line.startswith(f"Error: {problem}"), (args, result.stderr)
    # The good row before the bad one was delivered; nothing else was.
    assert ingest_keys(settings) == [b"shop/fraud/ok"]


# --- bugs found (expected to fail until fixed) ---------------------------------------------


@pytest.mark.parametrize(
    "timestamp", [datetime(1969, 12, 31, 23, 0, tzinfo=UTC), "1969-12-31T23:00:00+00:00"]
)
def test_a_time_before_the_epoch_is_refused_before_sending(
    settings: Settings, client: Driftline, timestamp: Any
) -> None:
    with pytest.raises(InvalidEventError, match="timestamp"):
        client.publish_event("shop", "fraud", {"age": 1}, event_timestamp=timestamp)
    assert ingest_keys(settings) == []


@pytest.mark.parametrize(
    ("csv", "expected"),
    [
        ("event_id,age\n007,1\n008,2\n", ["007", "008"]),
        ("event_id,age\n1,1\n,2\n3,3\n", ["1", None, "3"]),
    ],
)
def test_csv_event_ids_are_kept_as_written(
    settings: Settings, client: Driftline, tmp_path: Path, csv: str, expected: list[str | None]
) -> None:
    path = tmp_path / "ids.csv"
    path.write_text(csv)
    ids = client.publish_events_batch("shop", "fraud", path)
    # None: no id in the file, so any generated one will do.
    got = [None if want is None else got for got, want in zip(ids, expected, strict=True)]
    assert got == expected


def test_a_row_that_is_not_a_dict_names_its_number(client: Driftline) -> None:
    with pytest.raises(InvalidEventError, match="row 2"):
        client.publish_events_batch("shop", "fraud", [{"age": 1}, {"age": 2}, ["age", 3]])


def test_a_timestamp_too_big_for_milliseconds_is_a_clear_error(client: Driftline) -> None:
    """A column may hold an integer of any size (SPEC §3, integration/test_big_numbers.py); a
    timestamp may not."""
    row = {"event_id": "big", "age": 1, "timestamp": 10**20}
    with pytest.raises(InvalidEventError, match="row 1"):
        client.publish_events_batch("shop", "fraud", [{"event_id": "ok", "age": 1}, row])


def test_numpy_integers_are_accepted_as_id_and_timestamp(
    settings: Settings, client: Driftline
) -> None:
    published = client.publish_event(
        "shop", "fraud", {"age": 1}, event_id=np.int64(7), event_timestamp=np.int64(T0)
    )
    assert published == "7"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("ragged.csv", b"event_id,age\na,1\nb,2,3,4\n"),
        ("empty.csv", b""),
        ("corrupt.parquet", b"this is not parquet"),
    ],
)
def test_cli_reports_an_unreadable_file_without_a_traceback(
    settings: Settings, client: Driftline, tmp_path: Path, name: str, content: bytes
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = run_cli(settings, "publish", "shop", "fraud", path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(error_lines(result.stderr)) == 1
