"""The model dashboard: one model's hourly bins and alerts from the PostgreSQL projection.

Variables pick a project, one of its models and any of its columns; each panel's SQL is
in ``queries.py``. Alerts show twice: as annotations (regions over the bins they judged,
on every time panel) and as a table with their values and thresholds.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import heatmap, table, timeseries
from grafana_foundation_sdk.builders.dashboard import AnnotationQuery, QueryVariable
from grafana_foundation_sdk.models import dashboard
from grafana_foundation_sdk.models.common import GraphDrawStyle
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode, HeatmapColorScale

from driftline.dashboards import queries
from driftline.dashboards.datasources import POSTGRES
from driftline.dashboards.panels import FULL_WIDTH, PanelIds, dashboard_frame, series_panel
from driftline.dashboards.postgres_query import (
    PostgresAnnotationTargetBuilder,
    PostgresQueryBuilder,
    SqlFormat,
)

MODEL_DASHBOARD_UID = "driftline-model"


def model_dashboard(schema: str) -> dashboard.Dashboard:
    """The dashboard over the tables of ``schema`` (``postgres_tables.schema_name(prefix)``)."""
    ids = PanelIds()
    return (
        dashboard_frame(
            "Driftline: model",
            MODEL_DASHBOARD_UID,
            "Hourly bins of one model (traffic, integrity, drift, performance) and its alerts.",
            "now-7d",
        )
        .with_variable(_variable("project", "Project", queries.projects(schema)))
        .with_variable(_variable("model", "Model", queries.models(schema)))
        .with_variable(
            _variable("column", "Column", queries.columns(schema)).multi(True).include_all(True)
        )
        .annotation(
            AnnotationQuery()
            .name("Alerts")
            .datasource(POSTGRES)
            .enable(True)
            .icon_color("red")
            .target(
                PostgresAnnotationTargetBuilder(
                    _sql(queries.alert_annotations(schema), SqlFormat.TABLE)
                )
            )
        )
        .with_row(ids.row("Traffic"))
        .with_panel(
            ids.place(_series("Events per hour", queries.traffic(schema)))
            .description("Events of each hour bin, and how many of them have a label.")
            .draw_style(GraphDrawStyle.BARS)
            .unit("short")
        )
        .with_panel(
            ids.place(_series("Labelled share", queries.labelled_share(schema)))
            .description("Share of an hour's events with a label: performance covers only those.")
            .unit("percentunit")
            .min(0)
            .max(1)
        )
        .with_row(ids.row("Integrity"))
        .with_panel(
            ids.place(_series("Integrity per column", queries.integrity(schema)), FULL_WIDTH)
            .description(
                "Missing values, type mismatches and range violations per column and hour."
            )
            .draw_style(GraphDrawStyle.BARS)
            .unit("short")
        )
        .with_row(ids.row("Drift"))
        .with_panel(
            ids.place(
                heatmap.Panel()
                .title("PSI per column")
                .description("Population stability index against the baseline: a row per column.")
                .datasource(POSTGRES)
                .with_target(_sql(queries.drift_heatmap(schema)))
                .calculate(False)
                .color(
                    heatmap.HeatmapColorOptions()
                    .mode(HeatmapColorMode.SCHEME)
                    .scheme("Oranges")
                    .scale(HeatmapColorScale.EXPONENTIAL)
                    .exponent(0.5)
                ),
            )
        )
        .with_panel(
            ids.place(_series("Drift per column", queries.drift_lines(schema)))
            .description("PSI and Jensen-Shannon distance against the baseline, per column.")
            .unit("none")
        )
        .with_row(ids.row("Performance"))
        .with_panel(
            ids.place(_series("Performance", queries.performance(schema)), FULL_WIDTH)
            .description("Every metric the model's task and labels give, per hour.")
            .unit("none")
        )
        .with_row(ids.row("Alerts"))
        .with_panel(
            ids.place(
                table.Panel()
                .title("Alerts")
                .description("Alerts open during the time range, newest first.")
                .datasource(POSTGRES)
                .with_target(_sql(queries.alerts_table(schema), SqlFormat.TABLE))
                .show_header(True),
                FULL_WIDTH,
            )
        )
        .build()
    )


def _sql(sql: str, sql_format: SqlFormat = SqlFormat.TIME_SERIES) -> PostgresQueryBuilder:
    return PostgresQueryBuilder(sql).format(sql_format).ref_id("A").datasource(POSTGRES)


def _series(title: str, sql: str) -> timeseries.Panel:
    return series_panel().title(title).datasource(POSTGRES).with_target(_sql(sql))


def _variable(name: str, label: str, sql: str) -> QueryVariable:
    """A variable listing a query's values, queried again as the dashboard loads (a new
    project or model shows without editing the dashboard)."""
    return (
        QueryVariable(name)
        .id(name)
        .label(label)
        .datasource(POSTGRES)
        .query(sql)
        .refresh(dashboard.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dashboard.VariableSort.ALPHABETICAL_ASC)
    )
