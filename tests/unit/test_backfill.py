"""The pure rules of `driftline backfill`: mapping records, ids of rows without one, the
checkpoint's arithmetic and the report; and what the command refuses before it connects."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from driftline.backfill import with_columns
from driftline.cli import main
from driftline.state.backfill import (
    EXAMPLES_PER_REASON,
    MAX_REASONS,
    OTHER_REASONS,
    BackfillReport,
    Checkpoint,
    InvalidMappingError,
    SourceRow,
    advanced,
    backfill_event,
    derived_event_id,
    mapped_row,
    parse_mapping,
    report_lines,
)
from driftline.state.tabular import OutgoingEvent
from tests.support.models import CHURN_MODEL

T = 1_750_000_000_000


def test_a_mapping_reads_dotted_paths_for_the_id_the_time_and_columns() -> None:
    mapping = parse_mapping(["event_id=txn.id", "event_timestamp=ts", "age=who.age"], CHURN_MODEL)
    assert mapping == {"event_id": ("txn", "id"), "event_timestamp": ("ts",), "age": ("who", "age")}


@pytest.mark.parametrize(
    ("pair", "problem"),
    [
        ("event_id", "write TARGET=PATH"),
        ("=txn.id", "write TARGET=PATH"),
        ("event_id=txn..id", "write TARGET=PATH"),
        ("colour=x", "'colour' is neither event_id, event_timestamp nor a column of shop/churn"),
    ],
)
def test_a_mapping_that_cannot_apply_is_refused_before_anything_is_read(
    pair: str, problem: str
) -> None:
    with pytest.raises(InvalidMappingError, match=problem):
        parse_mapping([pair], CHURN_MODEL)


def test_a_target_mapped_twice_is_refused() -> None:
    with pytest.raises(InvalidMappingError, match="mapped twice"):
        parse_mapping(["age=a", "age=b"], CHURN_MODEL)


def test_a_record_becomes_the_row_a_file_would_hold() -> None:
    mapping = parse_mapping(["event_id=txn.id", "event_timestamp=ts", "age=who.age"], CHURN_MODEL)
    record = {"txn": {"id": "t1"}, "ts": T, "who": {"age": 30}, "plan": "pro", "score": None,
              "unrelated": 1}  # fmt: skip
    # Unmapped columns come from the fields of their own name; null is a value; the rest
    # of the record is left out.
    assert mapped_row(record, mapping, CHURN_MODEL) == {
        "event_id": "t1", "timestamp": T, "age": 30, "plan": "pro", "score": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ([1, 2], "a record must be a JSON object, got an array"),
        ("text", "a record must be a JSON object, got a string"),
        (None, "a record must be a JSON object, got null"),
        ({"ts": T, "who": {"age": 3}}, "no field txn.id (mapped to event_id)"),
        ({"txn": "t1", "ts": T, "who": {"age": 3}}, "no field txn.id (mapped to event_id)"),
        ({"txn": {"id": "t1"}, "who": {"age": 3}}, "no field ts (mapped to event_timestamp)"),
    ],
)
def test_a_record_that_cannot_be_mapped_says_why(record: Any, reason: str) -> None:
    mapping = parse_mapping(["event_id=txn.id", "event_timestamp=ts", "age=who.age"], CHURN_MODEL)
    assert mapped_row(record, mapping, CHURN_MODEL) == reason


def test_without_a_mapping_the_specs_own_names_are_read() -> None:
    record = {"event_id": 7, "timestamp": "2025-06-15T10:00:00Z", "age": 4}
    assert mapped_row(record, {}, CHURN_MODEL) == record


def row(values: dict[str, Any], index: int = 0) -> SourceRow:
    return SourceRow("a.csv", "/data/a.csv", index, values)


def test_a_row_becomes_an_insert_with_its_id_and_original_time() -> None:
    event = backfill_event(CHURN_MODEL, row({"event_id": "e1", "timestamp": T, "age": 3}))
    assert event == OutgoingEvent("e1", {"age": 3}, T)


@pytest.mark.parametrize("missing", [None, math.nan])
def test_a_row_without_an_id_gets_the_same_one_on_every_run(missing: Any) -> None:
    values = {"event_id": missing, "timestamp": T, "age": 3}
    first = backfill_event(CHURN_MODEL, row(values, index=12))
    again = backfill_event(CHURN_MODEL, row(dict(values), index=12))
    assert isinstance(first, OutgoingEvent)
    assert isinstance(again, OutgoingEvent)
    assert first.event_id == again.event_id == derived_event_id("/data/a.csv", 12)
    no_column = backfill_event(CHURN_MODEL, row({"timestamp": T, "age": 3}, index=12))
    assert isinstance(no_column, OutgoingEvent)
    assert no_column.event_id == first.event_id


def test_derived_ids_differ_from_row_to_row_and_file_to_file() -> None:
    ids = {
        derived_event_id(origin, index) for origin in ("/a.csv", "/b.csv") for index in range(500)
    }
    assert len(ids) == 1000


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"event_id": "e1", "age": 3}, "no event time (its 'timestamp' is empty or absent)"),
        ({"event_id": "e1", "timestamp": "yesterday"}, 'cannot read "yesterday" as a timestamp'),
        ({"event_id": True, "timestamp": T}, "event id must be a string or integer, got true"),
        ({"event_id": "e1", "timestamp": T, "score": math.inf}, "column 'score' is inf"),
    ],
)
def test_a_row_the_worker_could_not_take_is_refused_with_the_problem_alone(
    values: dict[str, Any], reason: str
) -> None:
    refused = backfill_event(CHURN_MODEL, row(values))
    assert isinstance(refused, str)
    assert refused.startswith(reason)


def test_a_record_that_is_no_row_is_refused_with_its_reason() -> None:
    assert backfill_event(CHURN_MODEL, SourceRow("0", "t/0", 5, "not valid JSON")) == (
        "not valid JSON"
    )


def test_the_checkpoint_only_moves_forward_part_by_part() -> None:
    position = {"a.csv": 100, "b.csv": 20}
    assert advanced(position, {"b.csv": 50, "c.csv": 5}) == {"a.csv": 100, "b.csv": 50, "c.csv": 5}
    assert advanced(position, {"a.csv": 60}) == position
    assert position == {"a.csv": 100, "b.csv": 20}  # a new position, the old one kept


def test_a_report_counts_reasons_keeps_a_few_examples_and_caps_the_reasons() -> None:
    report = BackfillReport()
    for index in range(5):
        report.refuse("bad time", f"a.csv row {index}")
    for reason in range(MAX_REASONS + 3):
        report.refuse(f"reason {reason}", "b.csv row 1")
    assert report.refused["bad time"] == 5
    assert report.examples["bad time"] == [f"a.csv row {i}" for i in range(EXAMPLES_PER_REASON)]
    assert len(report.refused) == MAX_REASONS + 1
    assert report.refused[OTHER_REASONS] == 4


def test_a_checkpoint_survives_its_file_form() -> None:
    report = BackfillReport(published=10)
    report.refuse("bad time", "a.csv row 3")
    checkpoint = Checkpoint("files /data", [["a.csv", 10, 1]], {"a.csv": 11}, True, report)
    assert Checkpoint.from_dict(checkpoint.to_dict()) == checkpoint


def test_problems_that_quote_different_values_count_under_one_reason() -> None:
    report = BackfillReport()
    report.refuse('cannot read "N/A" as a timestamp', "a.csv row 1")
    report.refuse('cannot read "?" as a timestamp', "a.csv row 2")
    assert report.refused == {'cannot read "…" as a timestamp': 2}
    assert report.examples['cannot read "…" as a timestamp'] == [
        'a.csv row 1: cannot read "N/A" as a timestamp',
        'a.csv row 2: cannot read "?" as a timestamp',
    ]


def test_the_report_says_what_was_published_at_which_rate_and_why_rows_were_refused() -> None:
    report = BackfillReport(published=30_000)
    for index in range(4):
        report.refuse("no event time", f"a.csv row {index}")
    report.refuse("bad id", "b.csv row 9")
    assert report_lines(report, 20_000, 2.0) == [
        "published 30,000 events (20,000 by this run in 2.0 s: 10,000 events/s)",
        "refused 5",
        "          4  no event time",
        "             e.g. a.csv row 0",
        "             e.g. a.csv row 1",
        "             e.g. a.csv row 2",
        "          1  bad id",
        "             e.g. b.csv row 9",
    ]
    assert report_lines(report)[0] == "published 30,000 events"  # a rerun of a finished one


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["{csv}"], "name the model: MODEL (project_id/model_id) or --project and --model"),
        (["--project", "shop", "{csv}"], "give --project and --model together"),
        (["shop/churn"], "give SOURCE"),
        (["shop/churn", "{csv}", "--from-topic", "old"], "give SOURCE"),
        (["--project", "shop", "--model", "churn", "{csv}", "x"], "give SOURCE"),
        (["shop/churn", "{missing}"], "no such file or directory"),
        (["shop", "{csv}"], "MODEL is project_id/model_id"),
        (["shop/churn", "{csv}", "--map", "age=a"], "--map and --from-bootstrap go with"),
    ],
)
def test_the_cli_says_what_a_backfill_needs_before_it_connects(
    arguments: list[str], problem: str, tmp_path: Path
) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("event_id,timestamp\n")
    named = [a.format(csv=csv, missing=tmp_path / "nope.csv") for a in arguments]
    result = CliRunner().invoke(main, ["backfill", *named])
    assert result.exit_code == 2
    assert problem in result.output


def test_a_source_may_name_its_own_id_and_time_columns() -> None:
    spec = with_columns(CHURN_MODEL, "txn_id", None)
    assert (spec.event_id_col, spec.event_ts_col) == ("txn_id", CHURN_MODEL.event_ts_col)
    assert spec.columns == CHURN_MODEL.columns
