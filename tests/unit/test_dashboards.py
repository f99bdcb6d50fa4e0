"""The generated dashboards: valid for the SDK's models, every panel complete, and every
query naming only what the PostgreSQL layout and the service metrics declare."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from grafana_foundation_sdk.models import dashboard as sdk
from grafana_foundation_sdk.models import prometheus
from prometheus_client import Counter, Gauge, Histogram

from driftline.cli import main
from driftline.dashboards.datasources import POSTGRES_UID, PROMETHEUS_UID
from driftline.dashboards.export import dashboards, decode, encode
from driftline.dashboards.postgres_query import PostgresAnnotationTarget, PostgresQuery
from driftline.topics import service_metrics
from driftline.topics.postgres_tables import AlertRow, BinMetricRow, BinRow
from tests.support.grafana import dashboard_queries

SCHEMA = "driftline"
# The tables a dashboard reads, with their columns: the projection's row types.
LAYOUT = {
    "bins": set(BinRow._fields),
    "bin_metrics": set(BinMetricRow._fields),
    "alerts": set(AlertRow._fields),
}
SQL_WORDS = {
    "select", "distinct", "from", "where", "and", "or", "in", "as", "order", "by", "is",
    "null", "not", "desc", "asc", "format", "case", "when", "then", "else", "end",
}  # fmt: skip


def exported() -> dict[str, dict[str, Any]]:
    """Each dashboard's JSON as ``driftline dashboards export`` writes it."""
    return {name: json.loads(encode(board)) for name, board in dashboards(SCHEMA).items()}


def without_empty_custom(value: Any) -> Any:
    """The JSON without ``"custom": {}``, which the SDK fills in when it reads a panel
    whose field config has no custom part."""
    if isinstance(value, dict):
        return {k: without_empty_custom(v) for k, v in value.items() if (k, v) != ("custom", {})}
    if isinstance(value, list):
        return [without_empty_custom(v) for v in value]
    return value


@pytest.mark.parametrize("name", ["driftline-model.json", "driftline-pipeline.json"])
def test_the_json_reads_back_into_the_sdks_models_unchanged(name: str) -> None:
    data = exported()[name]
    board = decode(data)
    assert without_empty_custom(json.loads(encode(board))) == without_empty_custom(data)
    targets = [t for p in board.panels or [] if isinstance(p, sdk.Panel) for t in p.targets or []]
    assert targets
    # Every query read as its typed model, none as the SDK's bag for unknown queries.
    assert all(isinstance(t, PostgresQuery | prometheus.Dataquery) for t in targets)
    for annotation in (board.annotations.list_val or []) if board.annotations else []:
        assert isinstance(annotation.target, PostgresAnnotationTarget)


def panels_of(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


@pytest.mark.parametrize(
    ("name", "uid"),
    [("driftline-model.json", POSTGRES_UID), ("driftline-pipeline.json", PROMETHEUS_UID)],
)
def test_every_panel_has_a_title_a_datasource_and_a_query(name: str, uid: str) -> None:
    board = exported()[name]
    assert board["uid"] == name.removesuffix(".json")
    panels = panels_of(board)
    assert panels
    for panel in panels:
        assert panel["title"], panel
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid, panel["title"]
            assert target["refId"], panel["title"]
    ids = [p["id"] for p in board["panels"]]  # rows too
    assert ids == list(range(1, len(ids) + 1))
    for variable in board.get("templating", {}).get("list", []):
        assert variable["datasource"]["uid"] == uid, variable["name"]
    for annotation in board.get("annotations", {}).get("list", []):
        assert annotation["datasource"]["uid"] == uid, annotation["name"]
        assert annotation["target"]["datasource"]["uid"] == uid, annotation["name"]


def test_the_model_dashboard_has_its_variables_panels_and_annotations() -> None:
    board = exported()["driftline-model.json"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["project", "model", "column"]
    assert variables["column"]["multi"]
    assert variables["column"]["includeAll"]
    assert "${project:sqlstring}" in variables["model"]["query"]  # model depends on project
    assert "${model:sqlstring}" in variables["column"]["query"]  # column on model
    kinds = {p["title"]: p["type"] for p in panels_of(board)}
    assert kinds["PSI per column"] == "heatmap"
    assert kinds["Alerts"] == "table"
    assert [a["name"] for a in board["annotations"]["list"]] == ["Alerts"]


def sql_names(sql: str) -> tuple[set[str], set[str], set[str]]:
    """The schemas, tables and column names an SQL query mentions (string literals,
    quoted aliases, Grafana's macros and variables set aside)."""
    text = re.sub(r"'(?:[^']|'')*'", " ", sql)
    qualified = re.findall(r'"(\w+)"\.(\w+)', text)
    text = re.sub(r'"\w+"\.\w+', " ", text)
    text = re.sub(r'"[^"]*"|\$\{[^}]*\}|\$__\w+|\$\w+|\b\d+\b', " ", text)
    words = {w.lower() for w in re.findall(r"[A-Za-z_]\w*", text)} - SQL_WORDS
    return {s for s, _ in qualified}, {t for _, t in qualified}, words


def test_the_sql_names_only_tables_and_columns_of_the_layout() -> None:
    queries = dashboard_queries(exported()["driftline-model.json"])
    assert {q.language for q in queries} == {"sql"}
    for query in queries:
        schemas, tables, words = sql_names(query.text)
        assert schemas == {SCHEMA}, query.where
        assert tables, query.where
        assert tables <= set(LAYOUT), query.where
        known = set().union(*(LAYOUT[t] for t in tables))
        assert words <= known, (query.where, words - known)
        assert query.required_columns <= set(query.expected_columns), query.where


def service_series() -> set[str]:
    """The series names the service metrics expose (prometheus-client's naming)."""
    names: set[str] = set()
    for metric in vars(service_metrics).values():
        if isinstance(metric, Counter | Gauge | Histogram):
            family = next(iter(metric.describe())).name
            if isinstance(metric, Counter):
                names.add(f"{family}_total")
            elif isinstance(metric, Histogram):
                names.update(f"{family}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
            else:
                names.add(family)
    return names


def test_the_promql_names_only_the_service_metrics() -> None:
    queries = dashboard_queries(exported()["driftline-pipeline.json"])
    assert {q.language for q in queries} == {"promql"}
    known = service_series()
    used = set()
    for query in queries:
        names = set(re.findall(r"\b[a-z_]+_(?:total|bucket|count|sum|messages|up)\b", query.text))
        assert names, query.where
        assert names <= known, (query.where, names - known)
        used |= names
    expected = {
        "driftline_messages_consumed_total",
        "driftline_messages_produced_total",
        "driftline_consumer_lag_messages",
        "driftline_dead_letters_total",
        "driftline_batch_duration_seconds_bucket",
        "driftline_label_to_emission_seconds_bucket",
        "driftline_projection_delay_seconds_bucket",
        "driftline_dependency_up",
        "driftline_http_requests_total",
        "driftline_http_request_duration_seconds_bucket",
    }
    assert used == expected


def test_export_writes_both_dashboards_for_the_settings_prefix(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["dashboards", "export", str(tmp_path / "out")],
        env={"DRIFTLINE_TOPIC_PREFIX": "Shop-EU"},
    )
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] == ["driftline-model.json", "driftline-pipeline.json"]
    assert result.output.splitlines() == [f"wrote {tmp_path / 'out' / p.name}" for p in written]
    model = json.loads(written[0].read_text())
    for query in dashboard_queries(model):
        assert sql_names(query.text)[0] == {"shop_eu"}, query.where
