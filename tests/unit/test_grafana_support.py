"""tests/support/grafana.py expands queries the way Grafana does and finds every query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.support.grafana import (
    DashboardQuery,
    dashboard_queries,
    expand_promql,
    expand_sql,
    select_columns,
)

FROM = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
TO = datetime(2026, 12, 7, 16, 30, 5, 250_000, tzinfo=UTC)


def test_time_macros_expand_as_the_postgres_backend_does() -> None:
    sql = "SELECT 1 FROM t WHERE $__timeFilter(hour) AND a <= $__timeTo() AND b >= $__timeFrom()"
    assert expand_sql(sql, {}, FROM, TO) == (
        "SELECT 1 FROM t WHERE hour BETWEEN '2026-12-07T10:00:00Z' AND '2026-12-07T16:30:05.25Z'"
        " AND a <= '2026-12-07T16:30:05.25Z' AND b >= '2026-12-07T10:00:00Z'"
    )


def test_a_time_range_in_another_zone_is_written_in_utc() -> None:
    paris = FROM.astimezone(ZoneInfo("Europe/Paris"))
    assert expand_sql("$__timeFrom()", {}, paris, TO) == "'2026-12-07T10:00:00Z'"


def test_sqlstring_quotes_each_value_and_joins_a_multi_value() -> None:
    variables = {"project": "o'hara", "column": ["age", "it's"]}
    sql = "p = ${project:sqlstring} AND c IN (${column:sqlstring})"
    assert expand_sql(sql, variables, FROM, TO) == "p = 'o''hara' AND c IN ('age','it''s')"


def test_a_bare_variable_is_escaped_unquoted_single_and_quoted_multi() -> None:
    variables = {"model": "o'k", "column": ["a", "b"]}
    assert expand_sql("'$model' ${model} IN ($column)", variables, FROM, TO) == (
        "'o''k' o''k IN ('a','b')"
    )


@pytest.mark.parametrize(
    "sql", ["$__timeGroup(hour, '1h')", "$__interval_ms", "${unknown}", "${model:csv}"]
)
def test_anything_not_expanded_here_raises(sql: str) -> None:
    with pytest.raises(ValueError, match="not expanded here"):
        expand_sql(sql, {"model": "m"}, FROM, TO)


def test_promql_intervals_expand_to_durations() -> None:
    expr = "rate(x[$__rate_interval]) + increase(x[$__range]) + avg_over_time(x[$__interval])"
    expanded = expand_promql(
        expr,
        scrape_interval=timedelta(seconds=15),
        interval=timedelta(seconds=30),
        time_range=timedelta(hours=1),
    )
    # rate interval: max(30 s + 15 s, 4 x 15 s) = 60 s
    assert expanded == "rate(x[60000ms]) + increase(x[3600000ms]) + avg_over_time(x[30000ms])"


def test_an_unknown_promql_variable_raises() -> None:
    with pytest.raises(ValueError, match="not expanded here"):
        expand_promql(
            "x{stage=~'$stage'}",
            scrape_interval=timedelta(seconds=15),
            interval=timedelta(seconds=15),
            time_range=timedelta(hours=1),
        )


def test_select_columns_names_aliases_and_bare_columns() -> None:
    sql = """SELECT DISTINCT hour AS "time", a.events, format('%s, %s', x, y) AS "text",
      coalesce(v, 0) AS total, labelled FROM t WHERE (SELECT 1 FROM u) = 1"""
    assert select_columns(sql) == ("time", "events", "text", "total", "labelled")


def test_a_computed_column_without_an_alias_is_refused() -> None:
    with pytest.raises(ValueError, match="needs an alias"):
        select_columns("SELECT count(*) FROM t")


POSTGRES = {"type": "grafana-postgresql-datasource", "uid": "pg"}
PROMETHEUS = {"type": "prometheus", "uid": "prom"}
BOARD = {
    "panels": [
        {"type": "row", "title": "collapsed", "panels": [
            {"type": "timeseries", "title": "Inner", "datasource": PROMETHEUS,
             "targets": [{"refId": "A", "expr": "up"}]},
        ]},
        {"type": "table", "title": "Rows", "datasource": POSTGRES,
         "targets": [{"refId": "B", "datasource": POSTGRES, "format": "table",
                      "rawSql": 'SELECT a AS "x" FROM t'}]},
    ],
    "templating": {"list": [
        {"type": "query", "name": "project", "datasource": POSTGRES, "query": "SELECT p FROM t"},
        {"type": "custom", "name": "constant", "query": "a,b"},
    ]},
    "annotations": {"list": [
        {"builtIn": 1, "name": "Annotations & Alerts", "datasource": {"type": "grafana"}},
        {"name": "Alerts", "datasource": POSTGRES,
         "target": {"rawSql": 'SELECT t AS "time", x AS "text" FROM a'}},
    ]},
}  # fmt: skip


def test_dashboard_queries_finds_targets_variables_and_annotations() -> None:
    assert dashboard_queries(BOARD) == [
        DashboardQuery("panel 'Inner' A", "panel", "promql", "up", None),
        DashboardQuery("panel 'Rows' B", "panel", "sql", 'SELECT a AS "x" FROM t', "table"),
        DashboardQuery("variable project", "variable", "sql", "SELECT p FROM t", "table"),
        DashboardQuery(
            "annotation Alerts",
            "annotation",
            "sql",
            'SELECT t AS "time", x AS "text" FROM a',
            "table",
        ),
    ]
    annotation = dashboard_queries(BOARD)[-1]
    assert annotation.expected_columns == ("time", "text")
    assert annotation.required_columns == {"time", "text"}
