"""`driftline backfill` on the real broker: SIGKILLed mid-run and rerun, it ends exact (the
stored events are the source's rows, once each; the bins equal their batch
recomputation); from another topic through a mapping, unmappable records are refused
with their reasons and the rest published, and a rerun goes on from the offsets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from click.testing import CliRunner

from driftline.cli import main
from driftline.client import Driftline
from driftline.settings import Settings
from driftline.state import exact_json
from driftline.state.commands import Insert
from driftline.topics.admin import ensure_topics
from driftline.topics.catalog import Topics, TopicSpec
from driftline.topics.messages import decode_ingest
from driftline.topics.producer import CheckedProducer
from driftline.topics.progress import merge_progress
from driftline.topics.reading import read_topic
from tests.support.hourly_bins import assert_redis_equals_recomputation
from tests.support.models import CHURN_BASELINE, CHURN_SPEC, HOUR0
from tests.support.pipeline import stored_events, wait_for_lag_zero

pytestmark = pytest.mark.integration

HOUR = 3_600_000
ROWS_PER_FILE = 12_000
HOURS = 300
# Rows in the CSV file that have no usable event time: refused, never published.
NO_TIME = {17: "N/A", 4_000: "N/A", 9_999: ""}


def churn_rows(file: int) -> list[dict[str, Any]]:
    """One file's rows over HOURS hours: every 7th without an id, a third unlabelled."""
    return [
        {"event_id": None if i % 7 == 0 else f"f{file}-{i}",
         "timestamp": HOUR0 + (i * 7919 + file) % HOURS * HOUR + i % 3600 * 1000,
         "age": 18 + i % 70, "plan": ["free", "pro", "team", "vip"][i % 4],
         "score": round((i * 37 % 1000) / 1000, 3), "churned": [0.0, 1.0, None][i % 3]}
        for i in range(ROWS_PER_FILE)
    ]  # fmt: skip


def write_source(directory: Path) -> list[dict[str, Any]]:
    """A CSV file (ISO times, a few missing) and a Parquet file (ms); the rows to publish."""
    directory.mkdir()
    csv_rows, parquet_rows = churn_rows(0), churn_rows(1)
    written = [
        {**row, "timestamp": NO_TIME.get(i, _iso(row["timestamp"]))}
        for i, row in enumerate(csv_rows)
    ]
    pd.DataFrame(written).to_csv(directory / "a.csv", index=False)
    pd.DataFrame(parquet_rows).to_parquet(directory / "b.parquet")
    kept = [row for i, row in enumerate(csv_rows) if i not in NO_TIME]
    return kept + parquet_rows


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def as_stored(row: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """What the event store must hold for a row: its time and its columns."""
    columns = {k: v for k, v in row.items() if k not in ("event_id", "timestamp")}
    return row["timestamp"], columns


def canonical(event: tuple[int, dict[str, Any]]) -> bytes:
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS)


def backfill_process(settings: Settings, source: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "driftline.cli", "backfill", "shop/churn", str(source),
               "--checkpoint-every", "2000"]  # fmt: skip
    env = {**os.environ, **settings.to_env()}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def kill_past_a_checkpoint(settings: Settings, process: subprocess.Popen[str]) -> None:
    """SIGKILL the backfill once its checkpoint has moved and the broker holds rows past
    it: the rerun sends those rows again (ids without a column included)."""
    ingest = merge_progress(settings)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            checkpoint = written_checkpoint(settings.home)
            published = 0 if checkpoint is None else checkpoint["report"]["published"]
            if published > 0 and ingest.end() > published + 500:
                process.send_signal(signal.SIGKILL)
                process.communicate()
                return
            time.sleep(0.005)
    finally:
        ingest.close()
    raise AssertionError(f"the backfill ended before it could be killed: {process.communicate()}")


def written_checkpoint(home: Path) -> dict[str, Any] | None:
    for path in (home / "backfills").glob("*.json"):
        found: dict[str, Any] = exact_json.loads(path.read_bytes())
        return found
    return None


def test_a_backfill_killed_mid_run_and_rerun_ends_exact(
    settings: Settings, start_worker: Callable[..., Any], tmp_path: Path
) -> None:
    settings = settings.with_overrides(home=tmp_path / "home")
    source = tmp_path / "history"
    rows = write_source(source)
    start_worker()
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)

    killed = backfill_process(settings, source)
    kill_past_a_checkpoint(settings, killed)
    assert killed.returncode == -signal.SIGKILL

    rerun = backfill_process(settings, source)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert out.startswith(f"published {len(rows):,} events ("), out
    assert f"refused {len(NO_TIME)}\n" in out

    wait_for_lag_zero(settings)
    stored = stored_events(settings)
    with_ids = {row["event_id"]: as_stored(row) for row in rows if row["event_id"] is not None}
    assert {event_id: stored[event_id] for event_id in with_ids} == with_ids
    # Rows without an id: each stored once, under an id of its own, though some were sent
    # twice (before the kill, and again from the checkpoint).
    assert sorted(map(canonical, stored.values())) == sorted(
        canonical(as_stored(row)) for row in rows
    )
    assert_redis_equals_recomputation(settings)

    again = backfill_process(settings, source)
    out, _ = again.communicate(timeout=60)
    assert out.startswith("already published")
    assert out.splitlines()[1:3] == [f"published {len(rows):,} events", f"refused {len(NO_TIME)}"]


MAPPING = ["--map", "event_id=txn.id", "--map", "event_timestamp=txn.at", "--map", "age=who.age"]


def history_record(i: int) -> bytes:
    return orjson.dumps({"txn": {"id": f"h{i}", "at": HOUR0 + i * 60_000},
                         "who": {"age": 20 + i}, "plan": "pro", "score": i / 100,
                         "churned": i % 2, "extra": [i]})  # fmt: skip


def produce_history(settings: Settings, topic: str, values: list[bytes | None]) -> None:
    producer = CheckedProducer(settings.bootstrap_servers)
    for number, value in enumerate(values):
        producer.produce(topic, f"k{number}".encode(), value)
    producer.flush()


def published_inserts(settings: Settings) -> list[tuple[str, int | None, dict[str, Any]]]:
    """The inserts on the ingest topic (what the backfill sent), by event id."""
    topic = Topics.for_settings(settings).ingest.name
    found = []
    for message in read_topic(settings.bootstrap_servers, topic):
        command = decode_ingest(message.key(), message.value(), received_ms=0,
                                offset=0, ref=0, max_bytes=1 << 20)  # fmt: skip
        assert isinstance(command, Insert), command
        found.append((command.event_id, command.timestamp_ms, command.columns))
    return sorted(found, key=lambda insert: insert[0])


def test_a_backfill_from_a_topic_maps_fields_refuses_what_it_cannot_map_and_resumes(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.with_overrides(home=tmp_path / "home")
    history = f"{settings.topic_prefix}.history"
    ensure_topics(settings.bootstrap_servers, [TopicSpec(history, 2)])
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
    unmappable: list[bytes | None] = [
        b"{not json",
        b"[1, 2]",
        orjson.dumps({"txn": {"at": HOUR0}, "who": {"age": 3}}),
        orjson.dumps({"txn": {"id": "late", "at": "soon"}, "who": {"age": 3}}),
        None,
    ]
    produce_history(settings, history, [history_record(i) for i in range(40)] + unmappable)

    def backfill() -> str:
        result = CliRunner().invoke(
            main, ["backfill", "shop/churn", "--from-topic", history, *MAPPING],
            env=settings.to_env(), catch_exceptions=False,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return result.stdout

    report = backfill()
    assert report.startswith("published 40 events (40 by this run in ")
    refused = report.splitlines()[1:]
    assert refused[0] == "refused 5"
    reasons = [line.strip() for line in refused if not line.strip().startswith("e.g.")]
    assert sorted(reasons[1:]) == sorted([
        "1  record is not valid JSON",
        "1  a record must be a JSON object, got an array",
        "1  no field txn.id (mapped to event_id)",
        '1  cannot read "…" as a timestamp',
        "1  empty record (a tombstone)",
    ])  # fmt: skip
    assert f"{history} partition 0 offset " in report or f"{history} partition 1 offset " in report
    assert 'cannot read "soon" as a timestamp' in report

    # Records that arrive later are published by a rerun, from the recorded offsets.
    produce_history(settings, history, [history_record(i) for i in range(40, 43)])
    assert backfill().startswith("published 43 events (3 by this run in ")
    # Each record once: the rerun sent only the new ones.
    assert published_inserts(settings) == sorted(
        (f"h{i}", HOUR0 + i * 60_000,
         {"age": 20 + i, "plan": "pro", "score": i / 100, "churned": i % 2})
        for i in range(43)
    )  # fmt: skip
