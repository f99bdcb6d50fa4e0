"""The generated dashboards' queries on real servers filled by a running pipeline.

A worker and an API take drifting events, late labels and a message that is not JSON; a
drift rule fires and notifies a local webhook. Once PostgreSQL holds exactly what the
metrics and alerts topics say, every SQL query of the model dashboard (panels, variables,
the alerts annotation), with its variables substituted and Grafana's time macros expanded,
runs on that PostgreSQL and returns rows with the columns its panel reads. Then a real
Prometheus (Debian's ``prometheus``) scrapes the worker and the API, and every PromQL
query of the pipeline dashboard, its intervals expanded, returns series.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from driftline.dashboards.export import dashboards, encode
from driftline.settings import Settings
from driftline.stack.prometheus import LocalPrometheus
from driftline.state.bins import HOUR_MS
from driftline.topics.catalog import Topics
from driftline.topics.messages import ingest_key
from driftline.topics.postgres_tables import schema_name
from driftline.topics.producer import CheckedProducer
from driftline.topics.waiting import wait_until
from tests.support.alert_rules import WEBHOOK_SECRET, drift_rule
from tests.support.alerts import current_alerts
from tests.support.api import StartApi, call, client_for, published, register, token_for
from tests.support.grafana import DashboardQuery, dashboard_queries, expand_promql, expand_sql
from tests.support.models import HOUR0, baseline_like, drifting, publish_churn
from tests.support.postgres import alerts_match_topic, postgres_matches_topic
from tests.support.webhooks import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

# The hours the events fall in, with an hour of margin either side: a dashboard's range.
TIME_FROM = datetime.fromtimestamp(HOUR0 / 1000, UTC) - timedelta(hours=1)
TIME_TO = TIME_FROM + timedelta(hours=4)
SCRAPE_INTERVAL = timedelta(seconds=1)


def feed_the_pipeline(settings: Settings, api: Any, token: str, receiver: Receiver) -> None:
    """A drift rule notifying ``receiver``; a baseline-like hour and a drifting one; late
    labels for the first; one message that is not JSON."""
    rule = drift_rule(channels=[{"type": "webhook", "url": receiver.url,
                                 "secret": WEBHOOK_SECRET}])  # fmt: skip
    created = call(api, "POST", "/v1/alert-rules", rule, token=token)
    assert created.status == 201, created.body
    normal = baseline_like("n", HOUR0, 120)
    published(settings, api, token, normal + drifting("d", HOUR0 + HOUR_MS, 120))
    label_and_break(settings, api, token, [row["event_id"] for row in normal])


def label_and_break(settings: Settings, api: Any, token: str, event_ids: list[str]) -> None:
    """Late labels for the events (through the client's producer), and one message that
    is not JSON."""
    labels = [{"event_id": event_id, "churned": i % 3 == 0} for i, event_id in enumerate(event_ids)]
    with client_for(api, token) as client:
        publish_churn(client, labels, update=True)
    producer = CheckedProducer(settings.bootstrap_servers)
    producer.produce(Topics.for_settings(settings).ingest.name,
                     ingest_key("shop", "churn", "bad"), b"{not json")  # fmt: skip
    producer.flush()


def projected(settings: Settings) -> bool:
    """PostgreSQL holds the topics' bins and alerts exactly, the labels and the drift alert
    among them."""
    alerts = current_alerts(settings)
    return (
        any(alert.open for alert in alerts.values())
        and postgres_matches_topic(settings)
        and alerts_match_topic(settings)
        and _performance_rows(settings) > 0
    )


def _performance_rows(settings: Settings) -> int:
    with psycopg.connect(settings.postgres, connect_timeout=5) as connection:
        found = connection.execute(
            f'SELECT count(*) FROM "{schema_name(settings.topic_prefix)}".bin_metrics '
            f"WHERE family = 'performance'"
        ).fetchone()
    return int(found[0]) if found else 0


def board(settings: Settings, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(encode(dashboards(settings.topic_prefix)[name]))
    return loaded


def run_sql(connection: psycopg.Connection[Any], query: DashboardQuery,
            variables: dict[str, Any]) -> list[tuple[Any, ...]]:  # fmt: skip
    """The query as Grafana's PostgreSQL datasource runs it; its columns checked."""
    cursor = connection.execute(expand_sql(query.text, variables, TIME_FROM, TIME_TO))
    assert cursor.description is not None, query.where
    assert [c.name for c in cursor.description] == list(query.expected_columns), query.where
    return cursor.fetchall()


def check_model_dashboard(settings: Settings) -> None:
    queries = dashboard_queries(board(settings, "driftline-model.json"))
    by_role = {role: [q for q in queries if q.role == role]
               for role in ("variable", "panel", "annotation")}  # fmt: skip
    assert all(by_role.values())
    with psycopg.connect(settings.postgres, autocommit=True) as connection:
        # The viewer's choices, each from the variable query before it (as Grafana does).
        variables: dict[str, Any] = {}
        for query in by_role["variable"]:
            name = query.where.removeprefix("variable ")
            choices = [row[0] for row in run_sql(connection, query, variables)]
            assert choices, query.where
            variables[name] = choices if name == "column" else choices[0]
        assert variables == {"project": "shop", "model": "churn",
                             "column": ["age", "plan", "score"]}  # fmt: skip
        for query in by_role["panel"] + by_role["annotation"]:
            rows = run_sql(connection, query, variables)
            assert rows, f"{query.where}: no rows"
            if "time" in query.expected_columns:
                at = query.expected_columns.index("time")
                assert all(TIME_FROM <= row[at] <= TIME_TO for row in rows), query.where


def check_pipeline_dashboard(settings: Settings, prometheus: LocalPrometheus) -> None:
    queries = dashboard_queries(board(settings, "driftline-pipeline.json"))
    assert queries
    assert {q.language for q in queries} == {"promql"}
    for query in queries:
        # A 5-minute step (a week's range on a panel): each rate window spans the test.
        promql = expand_promql(query.text, scrape_interval=SCRAPE_INTERVAL,
                               interval=timedelta(minutes=5),
                               time_range=timedelta(minutes=5))  # fmt: skip

        last: list[Any] = []

        def answered(promql: str = promql, last: list[Any] = last) -> bool:
            last[:] = prometheus.query(promql)
            return any(_number(series) for series in last)

        try:
            wait_until(answered, timeout_s=60, what="a series with a value")
        except TimeoutError:
            pytest.fail(f"{query.where}: {promql} answered {last}")


def _number(series: dict[str, Any]) -> bool:
    """A series whose value is a number (a quantile of a histogram that did not move in
    the window is NaN)."""
    return not math.isnan(float(series["value"][1]))


def test_every_dashboard_query_answers_on_a_running_pipeline(
    settings: Settings,
    start_worker: Callable[..., Any],
    start_api: StartApi,
    start_prometheus: Callable[[list[str]], LocalPrometheus],
) -> None:
    with Receiver() as receiver:
        worker = start_worker(settings)
        api = start_api(settings)
        register(settings)
        token = token_for(api, "shop")
        feed_the_pipeline(settings, api, token, receiver)
        wait_until(lambda: projected(settings), timeout_s=60,
                   what="PostgreSQL holding the topics' bins and alerts")  # fmt: skip
        check_model_dashboard(settings)

        metrics_of_api = f"{api.settings.api_metrics_host}:{api.settings.api_metrics_port}"
        prometheus = start_prometheus([f"{worker.host}:{worker.port}", metrics_of_api])
        wait_until(lambda: len(prometheus.query("up == 1")) == 2, timeout_s=30,
                   what="both targets scraped")  # fmt: skip
        # Traffic Prometheus sees happen: rates and quantiles need a change after a scrape.
        body = {"project_id": "shop", "model_id": "churn",
                "events": baseline_like("m", HOUR0 + 2 * HOUR_MS, 10)}  # fmt: skip
        more = call(api, "POST", "/v1/events", body, token=token)
        assert more.status == 200, more.body
        label_and_break(settings, api, token, [f"d-{i:04d}" for i in range(120)])
        check_pipeline_dashboard(settings, prometheus)
