"""The PostgreSQL projection's rows (``topics/postgres_tables.py``), checked field by field
against documents written out here as the metrics and alerts topics carry them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from driftline.state.alerts import Alert
from driftline.topics.postgres_tables import (
    AlertRow,
    BinMetricRow,
    BinRow,
    alert_row,
    bin_metric_rows,
    bin_row,
    ddl,
    schema_name,
)

HOUR_START_MS = 1_763_805_600_000  # 2025-11-22 10:00 UTC
HOUR = datetime(2025, 11, 22, 10, tzinfo=UTC)
HOUR_END = datetime(2025, 11, 22, 11, tzinfo=UTC)


def document(**changes: Any) -> dict[str, Any]:
    return {
        "project_id": "shop",
        "model_id": "churn",
        "hour_start_ms": HOUR_START_MS,
        "hour_end_ms": HOUR_START_MS + 3_600_000,
        "version": 7,
        "emitted_at_ms": HOUR_START_MS + 5_400_123,
        "counts": {"n": 4, "labelled": 3, "delay_ms": 10_000},
        "metrics": {
            "traffic": {"events": 4, "labelled": 3, "mean_ingest_delay_ms": 2_500.0},
            "integrity": {
                "age": {"missing": 1, "type_mismatch": 0, "range_violation": 2},
                "score": {"missing": 0, "type_mismatch": 0, "range_violation": 0},
            },
            "drift": {"age": {"js_distance": 0.25, "psi": 1.5}},
            "performance": {"accuracy": 0.75, "log_loss": 0.5},
        },
        **changes,
    }


def test_schema_names_are_lowercase_identifiers() -> None:
    assert schema_name("driftline") == "driftline"
    assert schema_name("Shop.Prod-2") == "shop_prod_2"
    assert schema_name("té st") == "t__st"


def test_a_bin_row_carries_the_documents_traffic() -> None:
    assert bin_row(document()) == BinRow(
        project_id="shop",
        model_id="churn",
        hour=HOUR,
        hour_end=HOUR_END,
        version=7,
        emitted_at=datetime(2025, 11, 22, 11, 30, 0, 123_000, tzinfo=UTC),
        events=4,
        labelled=3,
        labelled_share=0.75,
        mean_ingest_delay_seconds=2.5,
    )


def test_an_unknown_models_bin_takes_its_traffic_from_the_counts() -> None:
    raw = document()
    del raw["metrics"]
    row = bin_row(raw)
    assert (row.events, row.labelled, row.labelled_share) == (4, 3, 0.75)
    assert row.mean_ingest_delay_seconds == 2.5
    assert bin_metric_rows(raw) == []


def test_a_bin_without_events_has_no_shares() -> None:
    raw = document(counts={"miss:age": 1})
    del raw["metrics"]
    row = bin_row(raw)
    assert (row.events, row.labelled, row.labelled_share) == (0, 0, None)
    assert row.mean_ingest_delay_seconds is None


def test_every_metric_of_a_bin_is_one_row_with_the_model_level_ones_on_column_blank() -> None:
    def row(family: str, column: str, metric: str, value: float) -> BinMetricRow:
        return BinMetricRow("shop", "churn", HOUR, family, column, metric, value)

    assert sorted(bin_metric_rows(document())) == sorted([
        row("integrity", "age", "missing", 1.0),
        row("integrity", "age", "type_mismatch", 0.0),
        row("integrity", "age", "range_violation", 2.0),
        row("integrity", "score", "missing", 0.0),
        row("integrity", "score", "type_mismatch", 0.0),
        row("integrity", "score", "range_violation", 0.0),
        row("drift", "age", "js_distance", 0.25),
        row("drift", "age", "psi", 1.5),
        row("performance", "", "accuracy", 0.75),
        row("performance", "", "log_loss", 0.5),
    ])  # fmt: skip


def alert_record(**changes: Any) -> dict[str, Any]:
    def change(seq: int, kind: str, severity: str, at_ms: int) -> dict[str, Any]:
        return {"seq": seq, "change": kind, "severity": severity, "value": 12.0,
                "threshold": 10.0, "reference": None, "at_ms": at_ms}  # fmt: skip

    return {
        "key": f"shop/churn/r1/day/{HOUR_START_MS // 3_600_000}/age",
        "project_id": "shop",
        "model_id": "churn",
        "rule_id": "r1",
        "metric": "missing",
        "column": "age",
        "bin": "day",
        "bin_start_ms": HOUR_START_MS,
        "bin_end_ms": HOUR_START_MS + 24 * 3_600_000,
        "severity": "ok",
        "open": False,
        "value": 3.0,
        "threshold": 10.0,
        "reference": 2.0,
        "changes": [
            change(1, "fired", "critical", HOUR_START_MS + 1_000),
            change(2, "resolved", "ok", HOUR_START_MS + 9_000),
        ],
        **changes,
    }


def test_a_resolved_alerts_row_fired_at_its_first_change_and_resolved_at_its_last() -> None:
    assert alert_row(Alert.from_dict(alert_record())) == AlertRow(
        key=f"shop/churn/r1/day/{HOUR_START_MS // 3_600_000}/age",
        project_id="shop",
        model_id="churn",
        rule_id="r1",
        metric="missing",
        column_name="age",
        bin="day",
        bin_start=HOUR,
        bin_end=datetime(2025, 11, 23, 10, tzinfo=UTC),
        severity="ok",
        open=False,
        value=3.0,
        threshold=10.0,
        reference=2.0,
        fired_at=datetime(2025, 11, 22, 10, 0, 1, tzinfo=UTC),
        changed_at=datetime(2025, 11, 22, 10, 0, 9, tzinfo=UTC),
        resolved_at=datetime(2025, 11, 22, 10, 0, 9, tzinfo=UTC),
    )


def test_an_open_model_level_alert_is_not_resolved_and_has_column_blank() -> None:
    record = alert_record(column=None, severity="warning", reference=None)
    row = alert_row(Alert.from_dict(record))
    assert (row.column_name, row.severity, row.open) == ("", "warning", True)
    assert row.reference is None
    assert row.resolved_at is None


def test_the_ddl_declares_every_row_field_as_a_column_in_order() -> None:
    statements = ddl("shop")
    for table, row in (("bins", BinRow), ("bin_metrics", BinMetricRow), ("alerts", AlertRow)):
        (statement,) = [s for s in statements if f'"shop".{table} (' in s]
        declared = [line.split()[0] for line in statement.splitlines()[1:]]
        assert [name for name in declared if name not in {"PRIMARY", "FOREIGN"}] == list(
            row._fields
        )
