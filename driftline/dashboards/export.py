"""`driftline dashboards export DIR`: both dashboards as Grafana dashboard JSON files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.cog.runtime import register_dataquery_variant
from grafana_foundation_sdk.models import dashboard

from driftline.dashboards import postgres_query
from driftline.dashboards.model import MODEL_DASHBOARD_UID, model_dashboard
from driftline.dashboards.pipeline import PIPELINE_DASHBOARD_UID, pipeline_dashboard
from driftline.topics.postgres_tables import schema_name


def dashboards(topic_prefix: str) -> dict[str, dashboard.Dashboard]:
    """Each dashboard by its file name (its uid): the model dashboard reads the schema of
    ``topic_prefix``, the one the PostgreSQL projection of that prefix writes."""
    return {
        f"{MODEL_DASHBOARD_UID}.json": model_dashboard(schema_name(topic_prefix)),
        f"{PIPELINE_DASHBOARD_UID}.json": pipeline_dashboard(),
    }


def encode(board: dashboard.Dashboard) -> str:
    """The dashboard's JSON, by the SDK's encoder (stable key order: exports diff well)."""
    return JSONEncoder(sort_keys=True, indent=2).encode(board) + "\n"


def export(directory: Path, topic_prefix: str) -> list[Path]:
    """Writes both dashboards into ``directory`` (made if missing); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, board in dashboards(topic_prefix).items():
        path = directory / file_name
        path.write_text(encode(board))
        written.append(path)
    return written


def decode(data: dict[str, Any]) -> dashboard.Dashboard:
    """A dashboard's JSON read back into the SDK's models, the PostgreSQL queries as
    ``PostgresQuery`` (the SDK's own query types registered too).

    The SDK reads every annotation's target as the built-in Grafana datasource's; those
    of PostgreSQL annotations are read again as the SQL queries they are.
    """
    register_default_plugins()
    register_dataquery_variant(postgres_query.variant_config())
    board = dashboard.Dashboard.from_json(data)
    for annotation, raw in zip(board.annotations.list_val or [], _annotations(data), strict=True):
        if annotation.datasource.type_val == postgres_query.POSTGRES_PLUGIN and "target" in raw:
            query = postgres_query.PostgresQuery.from_json(raw["target"])
            annotation.target = postgres_query.PostgresAnnotationTarget(query)
    return board


def _annotations(data: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = data.get("annotations", {}).get("list", [])
    return found
