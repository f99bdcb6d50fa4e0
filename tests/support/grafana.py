"""Grafana's side of a generated dashboard, for tests that run its queries on real servers.

Every query a dashboard holds (panel targets, variable queries, annotations) with its
language and the columns it selects, and the expansions Grafana makes before a query
reaches its datasource: the PostgreSQL datasource's time macros (backend, Go) and the
frontend's variable interpolation for SQL datasources; Prometheus's ``$__rate_interval``,
``$__interval`` and ``$__range``. Only what the dashboards use: anything else raises, so
a query with a new macro or variable fails here instead of passing unexpanded.

Pure: no server, no Driftline module. The JSON is read as Grafana reads it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any, Literal

Role = Literal["panel", "variable", "annotation"]
Language = Literal["sql", "promql"]

POSTGRES_PLUGINS = ("grafana-postgresql-datasource", "postgres")
PROMETHEUS_PLUGIN = "prometheus"


@dataclass(frozen=True)
class DashboardQuery:
    """One query of a dashboard, where it sits and what its panel reads from it."""

    where: str  # "panel 'Traffic' A", "variable model", "annotation Alerts"
    role: Role
    language: Language
    text: str
    # SQL panels: "time_series" or "table"; variables and annotations read a table.
    sql_format: str | None

    @property
    def expected_columns(self) -> tuple[str, ...]:
        """The columns the query returns, in order (SQL; nothing for PromQL)."""
        return select_columns(self.text) if self.language == "sql" else ()

    @property
    def required_columns(self) -> frozenset[str]:
        """The columns Grafana needs by the query's use: a time column for a time series,
        a time and a text for an annotation (``timeend`` and ``tags`` are optional)."""
        if self.language == "promql":
            return frozenset()
        if self.role == "annotation":
            return frozenset({"time", "text"})
        if self.role == "panel" and self.sql_format == "time_series":
            return frozenset({"time"})
        return frozenset()


def dashboard_queries(dashboard: Mapping[str, Any]) -> list[DashboardQuery]:
    """Every query of a dashboard's JSON: panels' targets, then variables, annotations."""
    return [
        *_panel_queries(dashboard),
        *_variable_queries(dashboard),
        *_annotation_queries(dashboard),
    ]


def _language(datasource: Mapping[str, Any] | None) -> Language:
    plugin = (datasource or {}).get("type")
    if plugin in POSTGRES_PLUGINS:
        return "sql"
    if plugin == PROMETHEUS_PLUGIN:
        return "promql"
    raise ValueError(f"no query language known for datasource {datasource!r}")


def _panels(dashboard: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every panel, those inside collapsed rows too; rows themselves hold no query."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def _panel_queries(dashboard: Mapping[str, Any]) -> Iterator[DashboardQuery]:
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            language = _language(target.get("datasource") or panel.get("datasource"))
            where = f"panel {panel.get('title')!r} {target.get('refId')}"
            if language == "sql":
                yield DashboardQuery(where, "panel", "sql", target["rawSql"], target["format"])
            else:
                yield DashboardQuery(where, "panel", "promql", target["expr"], None)


def _variable_queries(dashboard: Mapping[str, Any]) -> Iterator[DashboardQuery]:
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        language = _language(variable.get("datasource"))
        query = variable["query"]
        if isinstance(query, Mapping):  # the editors' object form
            query = query.get("rawSql") or query.get("query") or query["expr"]
        sql_format = "table" if language == "sql" else None
        yield DashboardQuery(
            f"variable {variable['name']}", "variable", language, query, sql_format
        )


def _annotation_queries(dashboard: Mapping[str, Any]) -> Iterator[DashboardQuery]:
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("builtIn"):
            continue
        language = _language(annotation.get("datasource"))
        where = f"annotation {annotation['name']}"
        if language == "sql":
            target = annotation.get("target") or {}
            sql = target.get("rawSql") or annotation["rawQuery"]  # the legacy place
            yield DashboardQuery(where, "annotation", "sql", sql, "table")
        else:
            yield DashboardQuery(where, "annotation", "promql", annotation["expr"], None)


# --- the columns a SELECT returns --------------------------------------------------------------


def select_columns(sql: str) -> tuple[str, ...]:
    """The names of a SELECT's result columns: an item's ``AS`` alias (quoted or not),
    else its bare column name. Simple: the outer SELECT's list, split at commas outside
    parentheses and quotes (enough for the dashboards' queries)."""
    outer = _outside(sql)
    select = re.match(r"\s*SELECT\s+(?:DISTINCT\s+)?", outer, re.I)
    from_ = re.search(r"\bFROM\b", outer, re.I)
    if select is None or from_ is None:
        raise ValueError(f"not a SELECT ... FROM: {sql!r}")
    select_list = sql[select.end() : from_.start()]
    return tuple(_column_name(item) for item in _split_top_level(select_list))


def _outside(sql: str) -> str:
    """The SQL with parenthesised and quoted parts blanked (same length), so that a
    pattern matches only the outer statement's words."""
    blanked, depth, quote = [], 0, ""
    for char in sql:
        if quote:
            blanked.append(" ")
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
            blanked.append(" ")
        elif char == "(":
            depth += 1
            blanked.append(" ")
        elif char == ")":
            depth -= 1
            blanked.append(" ")
        else:
            blanked.append(" " if depth else char)
    return "".join(blanked)


def _split_top_level(select_list: str) -> list[str]:
    commas = [i for i, char in enumerate(_outside(select_list)) if char == ","]
    bounds = [-1, *commas, len(select_list)]
    return [select_list[a + 1 : b].strip() for a, b in pairwise(bounds)]


def _column_name(item: str) -> str:
    alias = re.search(r'\bAS\s+(?:"([^"]+)"|(\w+))\s*$', item, re.I)
    if alias:
        return alias.group(1) or alias.group(2)
    bare = re.fullmatch(r"(?:\w+\.)?(\w+)", item)
    if bare is None:
        raise ValueError(f"a computed column needs an alias: {item!r}")
    return bare.group(1)


# --- SQL as the PostgreSQL datasource runs it ------------------------------------------------

VariableValue = str | Sequence[str]


def expand_sql(
    sql: str, variables: Mapping[str, VariableValue], time_from: datetime, time_to: datetime
) -> str:
    """The SQL the PostgreSQL datasource runs: the time macros expanded by its backend,
    the variables by Grafana's frontend.

    A variable's value is a string (one selected value) or a sequence (a multi-value or
    "All" selection). ``${name:sqlstring}`` quotes each value as an SQL literal and joins
    them with commas; a bare ``$name`` / ``${name}`` does the same for a sequence and
    writes a single string with its quotes doubled but unquoted (the SQL datasources'
    ``interpolateVariable``).
    """
    expanded = re.sub(r"\$__(\w+)\(([^)]*)\)", lambda m: _macro(m, time_from, time_to), sql)
    return re.sub(
        r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)", lambda m: _sql_variable(m, variables), expanded
    )


def _macro(match: re.Match[str], time_from: datetime, time_to: datetime) -> str:
    name, argument = match.group(1), match.group(2).strip()
    start, end = _go_rfc3339_nano(time_from), _go_rfc3339_nano(time_to)
    if name == "timeFilter" and argument:
        return f"{argument} BETWEEN '{start}' AND '{end}'"
    if name == "timeFrom" and not argument:
        return f"'{start}'"
    if name == "timeTo" and not argument:
        return f"'{end}'"
    raise ValueError(f"macro not expanded here: {match.group(0)}")


def _go_rfc3339_nano(instant: datetime) -> str:
    """Go's ``time.RFC3339Nano`` of the instant in UTC: trailing zeros of the fraction
    dropped, ``Z`` for UTC (the macros' format)."""
    utc = instant.astimezone(UTC)
    fraction = f"{utc.microsecond:06d}".rstrip("0")
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_variable(match: re.Match[str], variables: Mapping[str, VariableValue]) -> str:
    name = match.group(1) or match.group(3)
    value_format = match.group(2)
    if name.startswith("__") or name not in variables:
        raise ValueError(f"variable not expanded here: {match.group(0)}")
    if value_format not in (None, "sqlstring"):
        raise ValueError(f"variable format not expanded here: {match.group(0)}")
    value = variables[name]
    if isinstance(value, str):
        return _sql_literal(value) if value_format else value.replace("'", "''")
    return ",".join(_sql_literal(v) for v in value)


# --- PromQL as Grafana sends it to Prometheus -------------------------------------------------


def expand_promql(
    expr: str, *, scrape_interval: timedelta, interval: timedelta, time_range: timedelta
) -> str:
    """The PromQL Grafana sends: ``$__interval`` (the panel's step), ``$__range`` (the
    time range) and ``$__rate_interval`` = max(``$__interval`` + scrape interval,
    4 x scrape interval), which keeps at least four scrapes in a ``rate`` window."""
    rate_interval = max(interval + scrape_interval, 4 * scrape_interval)
    durations = {"rate_interval": rate_interval, "interval": interval, "range": time_range}

    def duration(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in durations:
            raise ValueError(f"variable not expanded here: {match.group(0)}")
        return f"{int(durations[name].total_seconds() * 1000)}ms"

    expanded = re.sub(r"\$__(\w+)", duration, expr)
    if "$" in expanded:
        raise ValueError(f"variable not expanded here: {expr!r}")
    return expanded
