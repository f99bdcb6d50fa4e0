"""The PostgreSQL projection's layout: Grafana's datasource for the bins and the alerts.

One schema per topic prefix (``schema_name``), so that several Driftline deployments (and
the tests, one prefix each) share a server. Per bin, one ``bins`` row (traffic) and one
``bin_metrics`` row per (family, column, metric): a long table, so that a Grafana query
selects a metric by value (``WHERE family = 'drift' AND metric = 'psi'``) and a new
column or metric needs no new database column. ``alerts`` holds each alert's current
state (annotations); ``projected_offsets`` the projection's markers, written in the
same transaction as the rows they cover. ``topics/SCHEMAS.md`` documents every column.

The functions here are pure: a metrics document or an alert in, rows out, in the order
of their table's columns; the projection (``agents/postgres_projection.py``) writes them.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from driftline.state.alerts import Alert
from driftline.state.bins import HOUR_MS
from driftline.state.metrics import traffic
from driftline.state.periods import period_end_ms
from driftline.topics.metric_bins import MetricsValue

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOT_IN_NAME = re.compile(r"[^a-z0-9_]")


def schema_name(prefix: str) -> str:
    """The schema of ``prefix``'s tables: lowercased, anything outside [a-z0-9_] as ``_``."""
    return _NOT_IN_NAME.sub("_", prefix.lower())


def instant(ms: int) -> datetime:
    """UTC milliseconds as a timestamptz value, exactly (no float on the way)."""
    return _EPOCH + timedelta(milliseconds=ms)


class BinRow(NamedTuple):
    """A row of ``bins``: the bin's traffic."""

    project_id: str
    model_id: str
    hour: datetime
    hour_end: datetime
    version: int
    emitted_at: datetime
    events: int
    labelled: int
    labelled_share: float | None
    mean_ingest_delay_seconds: float | None


class BinMetricRow(NamedTuple):
    """A row of ``bin_metrics``: one metric of one column (or of the model) in a bin."""

    project_id: str
    model_id: str
    hour: datetime
    family: str
    column_name: str
    metric: str
    value: float


class AlertRow(NamedTuple):
    """A row of ``alerts``: an alert's current state."""

    key: str
    project_id: str
    model_id: str
    rule_id: str
    metric: str
    column_name: str
    bin: str
    bin_start: datetime
    bin_end: datetime
    severity: str
    open: bool
    value: float
    threshold: float
    reference: float | None
    fired_at: datetime
    changed_at: datetime
    resolved_at: datetime | None


# The metric families of a bin's ``metrics`` kept per column (a model-level family, the
# performance metrics, has the column '').
PER_COLUMN_FAMILIES = ("integrity", "drift")
MODEL_FAMILY = "performance"


def bin_row(document: MetricsValue) -> BinRow:
    """The ``bins`` row of a metrics document. Its traffic is the document's; a document
    without ``metrics`` (its model is not known) has it computed from its counters."""
    counts = document.get("metrics", {}).get("traffic") or traffic(document["counts"])
    events, labelled = counts["events"], counts["labelled"]
    delay_ms = counts["mean_ingest_delay_ms"]
    return BinRow(
        project_id=document["project_id"],
        model_id=document["model_id"],
        hour=instant(document["hour_start_ms"]),
        hour_end=instant(document["hour_end_ms"]),
        version=document["version"],
        emitted_at=instant(document["emitted_at_ms"]),
        events=events,
        labelled=labelled,
        labelled_share=labelled / events if events else None,
        mean_ingest_delay_seconds=None if delay_ms is None else delay_ms / 1000,
    )


def bin_metric_rows(document: MetricsValue) -> list[BinMetricRow]:
    """The ``bin_metrics`` rows of a metrics document: every metric it holds, none for a
    document without ``metrics``."""
    metrics: dict[str, Any] = document.get("metrics", {})
    project_id, model_id = document["project_id"], document["model_id"]
    hour = instant(document["hour_start_ms"])
    per_column = [
        (family, column, values)
        for family in PER_COLUMN_FAMILIES
        for column, values in metrics.get(family, {}).items()
    ]
    if MODEL_FAMILY in metrics:
        per_column.append((MODEL_FAMILY, "", metrics[MODEL_FAMILY]))
    return [
        BinMetricRow(project_id, model_id, hour, family, column, metric, float(value))
        for family, column, values in per_column
        for metric, value in values.items()
    ]


def bin_primary_key(document: MetricsValue) -> tuple[str, str, datetime]:
    return document["project_id"], document["model_id"], instant(document["hour_start_ms"])


def alert_row(alert: Alert) -> AlertRow:
    """The ``alerts`` row of an alert record: fired at its first change (the first kept),
    resolved at its last change when no longer open."""
    changed_at = instant(alert.last_change.at_ms)
    return AlertRow(
        key=alert.key,
        project_id=alert.project_id,
        model_id=alert.model_id,
        rule_id=alert.rule_id,
        metric=alert.metric,
        column_name=alert.column or "",
        bin=alert.bin.value,
        bin_start=instant(alert.bin_start_hour * HOUR_MS),
        bin_end=instant(period_end_ms(alert.bin_start_hour, alert.bin)),
        severity=alert.severity.value,
        open=alert.open,
        value=alert.value,
        threshold=alert.threshold,
        reference=alert.reference,
        fired_at=instant(alert.changes[0].at_ms),
        changed_at=changed_at,
        resolved_at=None if alert.open else changed_at,
    )


# Each table's columns, in its row's field order, with their SQL types: the DDL and the
# projection's typed arrays (``unnest(%s::bigint[], ...)``) both come from here.
BIN_COLUMNS: dict[str, str] = {
    "project_id": "text NOT NULL",
    "model_id": "text NOT NULL",
    "hour": "timestamptz NOT NULL",
    "hour_end": "timestamptz NOT NULL",
    "version": "bigint NOT NULL",
    "emitted_at": "timestamptz NOT NULL",
    "events": "bigint NOT NULL",
    "labelled": "bigint NOT NULL",
    "labelled_share": "double precision",
    "mean_ingest_delay_seconds": "double precision",
}
BIN_METRIC_COLUMNS: dict[str, str] = {
    "project_id": "text NOT NULL",
    "model_id": "text NOT NULL",
    "hour": "timestamptz NOT NULL",
    "family": "text NOT NULL",
    "column_name": "text NOT NULL",
    "metric": "text NOT NULL",
    "value": "double precision NOT NULL",
}
ALERT_COLUMNS: dict[str, str] = {
    "key": "text NOT NULL",
    "project_id": "text NOT NULL",
    "model_id": "text NOT NULL",
    "rule_id": "text NOT NULL",
    "metric": "text NOT NULL",
    "column_name": "text NOT NULL",
    "bin": "text NOT NULL",
    "bin_start": "timestamptz NOT NULL",
    "bin_end": "timestamptz NOT NULL",
    "severity": "text NOT NULL",
    "open": "boolean NOT NULL",
    "value": "double precision NOT NULL",
    "threshold": "double precision NOT NULL",
    "reference": "double precision",
    "fired_at": "timestamptz NOT NULL",
    "changed_at": "timestamptz NOT NULL",
    "resolved_at": "timestamptz",
}
MARKER_COLUMNS: dict[str, str] = {
    "topic": "text NOT NULL",
    "partition": "int NOT NULL",
    "next_offset": "bigint NOT NULL",
}
BIN_KEY = ("project_id", "model_id", "hour")


def sql_type(declared: str) -> str:
    """A column's type without its constraint: ``bigint NOT NULL`` -> ``bigint``."""
    return declared.removesuffix(" NOT NULL")


def _table(schema: str, name: str, columns: dict[str, str], *constraints: str) -> str:
    lines = [f"{column} {declared}" for column, declared in columns.items()]
    body = ",\n    ".join([*lines, *constraints])
    return f'CREATE TABLE IF NOT EXISTS "{schema}".{name} (\n    {body})'


def ddl(schema: str) -> list[str]:
    """The statements that create the schema and its tables where missing (idempotent)."""
    key = ", ".join(BIN_KEY)
    return [
        f'CREATE SCHEMA IF NOT EXISTS "{schema}"',
        _table(schema, "bins", BIN_COLUMNS, f"PRIMARY KEY ({key})"),
        _table(
            schema,
            "bin_metrics",
            BIN_METRIC_COLUMNS,
            f"PRIMARY KEY ({key}, family, column_name, metric)",
            f'FOREIGN KEY ({key}) REFERENCES "{schema}".bins ON DELETE CASCADE',
        ),
        _table(schema, "alerts", ALERT_COLUMNS, "PRIMARY KEY (key)"),
        _table(schema, "projected_offsets", MARKER_COLUMNS, "PRIMARY KEY (topic, partition)"),
    ]
