"""Every query the dashboards run, named, in one place.

The SQL reads the PostgreSQL projection, whose layout is ``topics/postgres_tables.py``'s
(one schema per topic prefix: ``schema_name``). Grafana expands its macros
(``$__timeFilter(hour)``, ``$__timeFrom()``, ``$__timeTo()``) and the dashboard's
variables, written ``${name:sqlstring}`` so that every value arrives as a quoted SQL
literal whatever it holds, and a multi-value one as a comma-joined list of them
(``IN (...)``). Rows come per model and hour, so an hour bin's
start is the time column as it is: no ``$__timeGroup`` regrouping.

The PromQL reads the service metrics of ``topics/service_metrics.py`` by the names those
objects declare, so a renamed metric renames its queries.
"""

from __future__ import annotations

from textwrap import dedent

from prometheus_client import Counter, Gauge, Histogram

from driftline.topics import service_metrics


def _table(schema: str, table: str) -> str:
    """A table of the schema, the schema quoted: a prefix may make it start with a digit."""
    return f'"{schema}".{table}'


def _sql(text: str) -> str:
    """A query as Grafana's editor shows it: the source's indentation removed."""
    return dedent(text).strip()


# --- the model dashboard (PostgreSQL) ----------------------------------------------------

PROJECT = "${project:sqlstring}"
MODEL = "${model:sqlstring}"
COLUMNS = "${column:sqlstring}"
THIS_MODEL = f"project_id = {PROJECT} AND model_id = {MODEL}"
# An alert shows where its bin is: on the same time axis as the metric that breached, so
# one fired days later by a late label or a backfill still marks the hours it is about.
ALERT_IN_RANGE = "bin_start < $__timeTo() AND bin_end > $__timeFrom()"


def projects(schema: str) -> str:
    """The ``project`` variable: every project with bins."""
    return f"SELECT DISTINCT project_id FROM {_table(schema, 'bins')} ORDER BY project_id"


def models(schema: str) -> str:
    """The ``model`` variable: the chosen project's models."""
    return _sql(f"""
        SELECT DISTINCT model_id FROM {_table(schema, "bins")} WHERE project_id = {PROJECT}
        ORDER BY model_id""")


def columns(schema: str) -> str:
    """The ``column`` variable: the chosen model's input and output columns (performance
    rows, model level, have the empty column)."""
    return _sql(f"""
        SELECT DISTINCT column_name FROM {_table(schema, "bin_metrics")}
        WHERE {THIS_MODEL} AND column_name <> ''
        ORDER BY column_name""")


def traffic(schema: str) -> str:
    """Events and labelled events per hour."""
    return _sql(f"""
        SELECT hour AS "time", events AS "events", labelled AS "labelled"
        FROM {_table(schema, "bins")}
        WHERE {THIS_MODEL} AND $__timeFilter(hour)
        ORDER BY hour""")


def labelled_share(schema: str) -> str:
    """The share of an hour's events with a label (none in an hour without events)."""
    return _sql(f"""
        SELECT hour AS "time", labelled_share AS "labelled share"
        FROM {_table(schema, "bins")}
        WHERE {THIS_MODEL} AND $__timeFilter(hour)
        ORDER BY hour""")


def _column_family(schema: str, family: str, metric: str) -> str:
    """One series per chosen column (and metric) of a family, long format: Grafana turns
    the ``metric`` column's values into series names."""
    return _sql(f"""
        SELECT hour AS "time", {metric} AS "metric", value AS "value"
        FROM {_table(schema, "bin_metrics")}
        WHERE {THIS_MODEL} AND family = '{family}' AND column_name IN ({COLUMNS})
          AND $__timeFilter(hour)
        ORDER BY hour, 2""")


def integrity(schema: str) -> str:
    """Missing values, type mismatches and range violations per column and hour."""
    return _column_family(schema, "integrity", "column_name || ' ' || metric")


def drift_lines(schema: str) -> str:
    """PSI and Jensen-Shannon distance per column and hour."""
    return _column_family(schema, "drift", "column_name || ' ' || metric")


def drift_heatmap(schema: str) -> str:
    """PSI per column and hour: one heatmap row per column."""
    return _sql(f"""
        SELECT hour AS "time", column_name AS "metric", value AS "value"
        FROM {_table(schema, "bin_metrics")}
        WHERE {THIS_MODEL} AND family = 'drift' AND metric = 'psi'
          AND column_name IN ({COLUMNS}) AND $__timeFilter(hour)
        ORDER BY hour, 2""")


def performance(schema: str) -> str:
    """Every performance metric the model's bins have (those its task and labels allow)."""
    return _sql(f"""
        SELECT hour AS "time", metric AS "metric", value AS "value"
        FROM {_table(schema, "bin_metrics")}
        WHERE {THIS_MODEL} AND family = 'performance' AND $__timeFilter(hour)
        ORDER BY hour, 2""")


def alerts_table(schema: str) -> str:
    """The model's alerts on bins in the time range, the newest fired first."""
    return _sql(f"""
        SELECT fired_at AS "fired", resolved_at AS "resolved", rule_id AS "rule",
          severity AS "severity", open AS "open", metric AS "metric",
          column_name AS "column", value AS "value", threshold AS "threshold",
          reference AS "reference", bin AS "bin", bin_start AS "bin start"
        FROM {_table(schema, "alerts")}
        WHERE {THIS_MODEL} AND {ALERT_IN_RANGE}
        ORDER BY fired_at DESC""")


def alert_annotations(schema: str) -> str:
    """The model's alerts as regions over the bins they judged, with their state."""
    return _sql(f"""
        SELECT bin_start AS "time", bin_end AS "timeend",
          format('%s %s: %s %s = %s (threshold %s), fired %s%s',
                 rule_id, severity, metric, column_name, value, threshold, fired_at,
                 CASE WHEN open THEN '' ELSE ', resolved ' || resolved_at END) AS "text",
          severity AS "tags"
        FROM {_table(schema, "alerts")}
        WHERE {THIS_MODEL} AND {ALERT_IN_RANGE}""")


# --- the pipeline dashboard (Prometheus) ---------------------------------------------------


def _name(metric: Counter | Gauge | Histogram) -> str:
    """A metric's family name as prometheus-client declares it (a counter's without
    ``_total``, which its sample adds)."""
    return next(iter(metric.describe())).name


def _counter(counter: Counter) -> str:
    """A counter's sample name (prometheus-client adds ``_total``)."""
    return f"{_name(counter)}_total"


def _gauge(gauge: Gauge) -> str:
    return _name(gauge)


def _buckets(histogram: Histogram) -> str:
    """A histogram's bucket series, what ``histogram_quantile`` reads."""
    return f"{_name(histogram)}_bucket"


def _rate(counter_or_buckets: str, by: str) -> str:
    return f"sum by ({by}) (rate({counter_or_buckets}[$__rate_interval]))"


def _quantile(quantile: float, histogram: Histogram, by: str) -> str:
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({quantile}, {_rate(_buckets(histogram), labels)})"


CONSUMED = _rate(_counter(service_metrics.MESSAGES_CONSUMED), "stage, topic")
PRODUCED = _rate(_counter(service_metrics.MESSAGES_PRODUCED), "stage, topic")
CONSUMER_LAG = f"sum by (stage) ({_gauge(service_metrics.CONSUMER_LAG)})"
DEAD_LETTERS = _rate(_counter(service_metrics.DEAD_LETTERS), "stage, reason")
BATCH_DURATION_P50 = _quantile(0.5, service_metrics.BATCH_DURATION, "stage")
BATCH_DURATION_P99 = _quantile(0.99, service_metrics.BATCH_DURATION, "stage")
LABEL_TO_EMISSION_P99 = _quantile(0.99, service_metrics.LABEL_TO_EMISSION, "")
PROJECTION_DELAY_P99 = _quantile(0.99, service_metrics.PROJECTION_DELAY, "projection")
# The lowest over a job's processes: 0 when any of them lost the dependency.
DEPENDENCY_UP = f"min by (job, dependency) ({_gauge(service_metrics.DEPENDENCY_UP)})"
HTTP_REQUESTS = _rate(_counter(service_metrics.HTTP_REQUESTS), "code")
HTTP_DURATION_P50 = _quantile(0.5, service_metrics.HTTP_REQUEST_DURATION, "route")
HTTP_DURATION_P99 = _quantile(0.99, service_metrics.HTTP_REQUEST_DURATION, "route")
