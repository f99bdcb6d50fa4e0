"""A test's PostgreSQL schema: dropped once the test is done with it, and its rows read back
and compared with the topics they project, field by field (written out here, not through
the projection's own row functions)."""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Any

import psycopg

from driftline.settings import Settings
from driftline.state.alerts import Alert
from driftline.topics.postgres_tables import schema_name
from tests.support.alerts import current_alerts
from tests.support.hourly_bins import bins_in_topic


def drop_schema(url: str, prefix: str) -> None:
    """Drop the schema of ``prefix``'s tables, best effort (like ``drop_topics``): a server
    that is gone (a test stopped its own) is left alone."""
    with (
        contextlib.suppress(psycopg.OperationalError),
        psycopg.connect(url, connect_timeout=5, autocommit=True) as connection,
    ):
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema_name(prefix)}" CASCADE')


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else round(moment.timestamp() * 1000)


# A bin as compared: its bins row and its set of bin_metrics rows.
BinRows = tuple[tuple[Any, ...], frozenset[tuple[str, str, str, float]]]


def bins_in_postgres(settings: Settings) -> dict[int, BinRows]:
    """The churn model's bins in PostgreSQL by hour start (ms)."""
    schema = schema_name(settings.topic_prefix)
    with psycopg.connect(settings.postgres, connect_timeout=5) as connection:
        bins = connection.execute(
            f"SELECT hour, hour_end, version, emitted_at, events, labelled, labelled_share, "
            f"mean_ingest_delay_seconds FROM {schema}.bins "
            f"WHERE project_id = 'shop' AND model_id = 'churn'"
        ).fetchall()
        metrics = connection.execute(
            f"SELECT hour, family, column_name, metric, value FROM {schema}.bin_metrics "
            f"WHERE project_id = 'shop' AND model_id = 'churn'"
        ).fetchall()
    found: dict[int, BinRows] = {}
    for hour, hour_end, version, emitted_at, *traffic in bins:
        row = (_ms(hour_end), version, _ms(emitted_at), *traffic)
        found[_ms(hour) or 0] = (row, frozenset())
    for hour, *metric in metrics:
        row, before = found[_ms(hour) or 0]
        found[_ms(hour) or 0] = (row, before | {tuple(metric)})
    return found


def expected_bin_rows(document: dict[str, Any]) -> BinRows:
    """What the layout (topics/SCHEMAS.md) says a metrics document's rows hold."""
    traffic = document["metrics"]["traffic"]
    events, labelled, delay = (
        traffic["events"],
        traffic["labelled"],
        traffic["mean_ingest_delay_ms"],
    )
    row = (
        document["hour_end_ms"], document["version"], document["emitted_at_ms"], events,
        labelled, labelled / events if events else None, None if delay is None else delay / 1000,
    )  # fmt: skip
    metrics = document["metrics"]
    flat = {
        (family, column, name, float(value))
        for family in ("integrity", "drift")
        for column, values in metrics.get(family, {}).items()
        for name, value in values.items()
    }
    flat |= {
        ("performance", "", name, value) for name, value in metrics.get("performance", {}).items()
    }
    return row, frozenset(flat)


def postgres_matches_topic(settings: Settings) -> bool:
    """PostgreSQL holds exactly the metrics topic's last value of every bin (tombstones:
    no rows)."""
    try:
        in_postgres = bins_in_postgres(settings)
    except psycopg.Error:
        return False
    expected = {
        hour * 3_600_000: expected_bin_rows(document)
        for hour, document in bins_in_topic(settings).items()
        if document is not None
    }
    return bool(expected) and in_postgres == expected


def alerts_in_postgres(settings: Settings) -> dict[str, tuple[Any, ...]]:
    schema = schema_name(settings.topic_prefix)
    with psycopg.connect(settings.postgres, connect_timeout=5) as connection:
        rows = connection.execute(
            f"SELECT key, project_id, model_id, rule_id, metric, column_name, bin, bin_start, "
            f"bin_end, severity, open, value, threshold, reference, fired_at, changed_at, "
            f"resolved_at FROM {schema}.alerts"
        ).fetchall()
    return {
        row[0]: (*row[1:7], _ms(row[7]), _ms(row[8]), *row[9:14], _ms(row[14]), _ms(row[15]),
                 _ms(row[16]))
        for row in rows
    }  # fmt: skip


def expected_alert_row(alert: Alert) -> tuple[Any, ...]:
    record = alert.to_dict()
    changes = record["changes"]
    return (
        record["project_id"], record["model_id"], record["rule_id"], record["metric"],
        record["column"] or "", record["bin"], record["bin_start_ms"], record["bin_end_ms"],
        record["severity"], record["open"], record["value"], record["threshold"],
        record["reference"], changes[0]["at_ms"], changes[-1]["at_ms"],
        None if record["open"] else changes[-1]["at_ms"],
    )  # fmt: skip


def alerts_match_topic(settings: Settings) -> bool:
    """PostgreSQL holds exactly the alerts topic's newest record of every alert."""
    try:
        in_postgres = alerts_in_postgres(settings)
    except psycopg.Error:
        return False
    expected = {key: expected_alert_row(a) for key, a in current_alerts(settings).items()}
    return bool(expected) and in_postgres == expected
