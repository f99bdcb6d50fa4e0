"""Every SQL query of the model dashboard, expanded the way Grafana expands it, runs on a
real PostgreSQL holding the projection's layout and returns rows with the columns its
panel, variable or annotation reads.

The rows are written here by SQL, a stand-in for the projection: they follow the
layout's row types (``topics/postgres_tables.py``), so a column renamed there fails here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

import psycopg
import pytest

from driftline.dashboards.export import dashboards, encode
from driftline.settings import Settings
from driftline.topics.postgres_tables import (
    AlertRow,
    BinMetricRow,
    BinRow,
    ddl,
    schema_name,
)
from tests.support.grafana import dashboard_queries, expand_sql

pytestmark = pytest.mark.integration

HOUR = datetime(2026, 12, 7, 10, tzinfo=UTC)
TIME_FROM, TIME_TO = HOUR - timedelta(hours=6), HOUR + timedelta(hours=6)
COLUMNS = ["age", "country"]
# The choices a viewer makes: a project, a model, every column ("All" is each value).
VARIABLES = {"project": "shop", "model": "churn", "column": COLUMNS}


def bins() -> list[BinRow]:
    return [
        BinRow("shop", "churn", HOUR + timedelta(hours=h), HOUR + timedelta(hours=h + 1), 1,
               HOUR + timedelta(hours=h + 1), 100 + h, 40, (40 / (100 + h)), 1.5)
        for h in range(3)
    ]  # fmt: skip


def bin_metrics() -> list[BinMetricRow]:
    per_column = [
        ("integrity", "missing", 3.0),
        ("integrity", "type_mismatch", 1.0),
        ("integrity", "range_violation", 0.0),
        ("drift", "psi", 0.21),
        ("drift", "js_distance", 0.08),
    ]
    rows = [
        BinMetricRow("shop", "churn", bin_.hour, family, column, metric, value)
        for bin_ in bins()
        for column in COLUMNS
        for family, metric, value in per_column
    ]
    rows += [
        BinMetricRow("shop", "churn", bin_.hour, "performance", "", metric, value)
        for bin_ in bins()
        for metric, value in (("accuracy", 0.91), ("auc", 0.87))
    ]
    return rows


def alerts() -> list[AlertRow]:
    """One alert resolved an hour after firing, one still open."""
    fired = HOUR + timedelta(hours=1)
    return [
        AlertRow("shop/churn/psi-age/hour/1", "shop", "churn", "psi-age", "psi", "age", "hour",
                 HOUR, HOUR + timedelta(hours=1), "ok", False, 0.05, 0.2, None, fired,
                 fired + timedelta(hours=1), fired + timedelta(hours=1)),
        AlertRow("shop/churn/accuracy/hour/2", "shop", "churn", "accuracy", "accuracy", "",
                 "hour", HOUR + timedelta(hours=1), HOUR + timedelta(hours=2), "critical",
                 True, 0.6, 0.8, 0.9, fired, fired, None),
    ]  # fmt: skip


def insert(connection: psycopg.Connection, table: str, rows: Sequence[NamedTuple]) -> None:
    """The rows into the table, by the layout's column names."""
    names = ", ".join(rows[0]._fields)
    places = ", ".join(["%s"] * len(rows[0]._fields))
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({places})", rows)


def test_every_model_dashboard_query_returns_the_columns_it_is_read_by(
    settings: Settings,
) -> None:
    schema = schema_name(settings.topic_prefix)
    board = json.loads(encode(dashboards(settings.topic_prefix)["driftline-model.json"]))
    queries = dashboard_queries(board)
    assert {q.role for q in queries} == {"panel", "variable", "annotation"}
    with psycopg.connect(settings.postgres, autocommit=True) as connection:
        for statement in ddl(schema):
            connection.execute(statement)
        insert(connection, f'"{schema}".bins', bins())
        insert(connection, f'"{schema}".bin_metrics', bin_metrics())
        insert(connection, f'"{schema}".alerts', alerts())
        for query in queries:
            cursor = connection.execute(expand_sql(query.text, VARIABLES, TIME_FROM, TIME_TO))
            assert cursor.description is not None, query.where
            assert [c.name for c in cursor.description] == list(query.expected_columns), query.where
            rows = cursor.fetchall()
            assert rows, query.where
            if "time" in query.expected_columns:
                times = [row[query.expected_columns.index("time")] for row in rows]
                assert all(TIME_FROM <= t <= TIME_TO for t in times), query.where


def test_the_variables_list_what_the_tables_hold(settings: Settings) -> None:
    """The project, model and column choices come from the rows: the performance rows'
    empty column is no choice."""
    schema = schema_name(settings.topic_prefix)
    board = json.loads(encode(dashboards(settings.topic_prefix)["driftline-model.json"]))
    variables = {q.where: q for q in dashboard_queries(board) if q.role == "variable"}
    with psycopg.connect(settings.postgres, autocommit=True) as connection:
        for statement in ddl(schema):
            connection.execute(statement)
        insert(connection, f'"{schema}".bins', bins())
        insert(connection, f'"{schema}".bin_metrics', bin_metrics())
        listed = {
            where: [row[0] for row in connection.execute(
                expand_sql(query.text, VARIABLES, TIME_FROM, TIME_TO)
            )]
            for where, query in variables.items()
        }  # fmt: skip
    assert listed == {
        "variable project": ["shop"],
        "variable model": ["churn"],
        "variable column": COLUMNS,
    }
