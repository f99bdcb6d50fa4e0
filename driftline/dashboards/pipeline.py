"""The pipeline dashboard: the service metrics of every Driftline process in Prometheus.

Throughput and lag per stage, dead letters, batch handling time, the latency from a
label to its bin and from a bin to its projections, dependencies, and the REST API; each
panel's PromQL is in ``queries.py``.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.models import dashboard
from grafana_foundation_sdk.models.common import LineInterpolation

from driftline.dashboards import queries
from driftline.dashboards.datasources import PROMETHEUS
from driftline.dashboards.panels import PanelIds, dashboard_frame, series_panel

PIPELINE_DASHBOARD_UID = "driftline-pipeline"


def pipeline_dashboard() -> dashboard.Dashboard:
    ids = PanelIds()
    return (
        dashboard_frame(
            "Driftline: pipeline",
            PIPELINE_DASHBOARD_UID,
            "Throughput, lag, dead letters and latencies of the Driftline processes.",
            "now-1h",
        )
        .with_row(ids.row("Flow"))
        .with_panel(
            ids.place(
                _series(
                    "Throughput",
                    _promql(queries.CONSUMED, "{{stage}} in {{topic}}", "A"),
                    _promql(queries.PRODUCED, "{{stage}} out {{topic}}", "B"),
                )
            )
            .description("Messages per second each stage reads from and writes to each topic.")
            .unit("suffix: msg/s")
        )
        .with_panel(
            ids.place(_series("Consumer lag", _promql(queries.CONSUMER_LAG, "{{stage}}")))
            .description("Messages each stage has yet to read, over its partitions.")
            .unit("short")
        )
        .with_panel(
            ids.place(
                _series("Dead letters", _promql(queries.DEAD_LETTERS, "{{stage}} {{reason}}"))
            )
            .description("Messages set aside per second, by stage and kind of reason.")
            .unit("suffix: msg/s")
        )
        .with_panel(
            ids.place(
                _series(
                    "Batch duration",
                    _promql(queries.BATCH_DURATION_P50, "{{stage}} p50", "A"),
                    _promql(queries.BATCH_DURATION_P99, "{{stage}} p99", "B"),
                )
            )
            .description("Time to handle a batch and commit its outputs, per stage.")
            .unit("s")
        )
        .with_row(ids.row("Latency"))
        .with_panel(
            ids.place(
                _series("Label to emission p99", _promql(queries.LABEL_TO_EMISSION_P99, "p99"))
            )
            .description("From a label reaching the ingest topic to its bin's emission.")
            .unit("s")
        )
        .with_panel(
            ids.place(
                _series(
                    "Projection delay p99", _promql(queries.PROJECTION_DELAY_P99, "{{projection}}")
                )
            )
            .description("From a bin's emission to its write into Redis and PostgreSQL.")
            .unit("s")
        )
        .with_row(ids.row("Dependencies and API"))
        .with_panel(
            ids.place(
                _series("Dependency up", _promql(queries.DEPENDENCY_UP, "{{job}} {{dependency}}"))
            )
            .description("1 while every process of a job reaches Kafka, Redis, PostgreSQL; else 0.")
            .line_interpolation(LineInterpolation.STEP_AFTER)
            .min(0)
            .max(1)
        )
        .with_panel(
            ids.place(_series("HTTP requests", _promql(queries.HTTP_REQUESTS, "{{code}}")))
            .description("REST API requests per second by status code.")
            .unit("reqps")
        )
        .with_panel(
            ids.place(
                _series(
                    "HTTP latency",
                    _promql(queries.HTTP_DURATION_P50, "{{route}} p50", "A"),
                    _promql(queries.HTTP_DURATION_P99, "{{route}} p99", "B"),
                )
            )
            .description("REST API request handling time per route.")
            .unit("s")
        )
        .build()
    )


def _promql(expr: str, legend: str, ref_id: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref_id)
        .datasource(PROMETHEUS)
    )


def _series(title: str, *targets: prometheus.Dataquery) -> timeseries.Panel:
    panel = series_panel().title(title).datasource(PROMETHEUS)
    for target in targets:
        panel = panel.with_target(target)
    return panel
