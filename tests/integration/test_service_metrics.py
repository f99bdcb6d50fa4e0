"""The service metrics as Prometheus sees them: a worker and an API process scraped by a
real Prometheus server (Debian's ``prometheus``), and PromQL answered with the series the
pipeline dashboard queries, their values checked against the traffic the test sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from driftline.settings import Settings
from driftline.stack.prometheus import LocalPrometheus
from driftline.state.bins import HOUR_MS
from driftline.topics.catalog import Topics
from driftline.topics.messages import encode_ingest, ingest_key
from driftline.topics.producer import CheckedProducer
from driftline.topics.waiting import wait_until
from tests.support.api import published, register, rows, token_for
from tests.support.hourly_bins import bins_in_redis
from tests.support.models import HOUR0

pytestmark = pytest.mark.integration

EVENTS = 20


def _total(prometheus: LocalPrometheus, promql: str) -> float | None:
    """The sum of the query's series; None while it has none."""
    series = prometheus.query(promql)
    return sum(float(found["value"][1]) for found in series) if series else None


def _eventually(prometheus: LocalPrometheus, promql: str, check: Callable[[float], bool]) -> None:
    def holds() -> bool:
        value = _total(prometheus, promql)
        return value is not None and check(value)

    wait_until(holds, timeout_s=30, what=f"{promql} (last: {_total(prometheus, promql)})")


def _send_late_label_and_a_bad_message(settings: Settings) -> None:
    """A label for an event already in its bin, and a message that is not JSON."""
    producer = CheckedProducer(settings.bootstrap_servers)
    ingest = Topics.for_settings(settings).ingest.name
    label = encode_ingest("update", "shop", "churn", "e-0003", {"churned": True})
    producer.produce(ingest, ingest_key("shop", "churn", "e-0003"), label)
    producer.produce(ingest, ingest_key("shop", "churn", "bad"), b"{not json")
    producer.flush()


def test_prometheus_scrapes_the_worker_and_the_api(
    settings: Settings,
    start_worker: Callable[..., Any],
    start_api: Callable[..., Any],
    start_prometheus: Callable[[list[str]], LocalPrometheus],
) -> None:
    worker = start_worker(settings)
    api = start_api(settings)
    register(settings)
    published(settings, api, token_for(api, "shop"), rows(EVENTS, hours=2))
    _send_late_label_and_a_bad_message(settings)
    labelled_hour = (HOUR0 + (3 % 2) * HOUR_MS) // HOUR_MS
    wait_until(
        lambda: bins_in_redis(settings)[labelled_hour]["counts"].get("labelled") == 1,
        timeout_s=30, what="the late label in its bin",
    )  # fmt: skip
    api_metrics = f"{api.settings.api_metrics_host}:{api.settings.api_metrics_port}"
    prometheus = start_prometheus([f"{worker.host}:{worker.port}", api_metrics])

    # Every message sent to the ingest topic was consumed once by the merge stage.
    _eventually(prometheus, 'driftline_messages_consumed_total{stage="merge"}',
                lambda n: n == EVENTS + 2)  # fmt: skip
    _eventually(prometheus, 'driftline_dead_letters_total{stage="merge",reason="malformed_json"}',
                lambda n: n == 1)  # fmt: skip
    dead_letters = Topics.for_settings(settings).dead_letters.name
    _eventually(prometheus, f'driftline_messages_produced_total{{topic="{dead_letters}"}}',
                lambda n: n == 1)  # fmt: skip
    _eventually(prometheus, 'driftline_bin_emissions_total{kind="bin"}', lambda n: n >= 2)
    _eventually(prometheus, "driftline_label_to_emission_seconds_count", lambda n: n == 1)
    _eventually(prometheus, 'driftline_batch_size_messages_sum{stage="merge"}',
                lambda n: n == EVENTS + 2)  # fmt: skip
    _eventually(prometheus, 'driftline_batch_duration_seconds_count{stage="bins"}', lambda n: n > 0)
    _eventually(prometheus, 'driftline_consumer_lag_messages{stage="merge"}', lambda n: n == 0)
    _eventually(prometheus, 'driftline_dependency_up{dependency="redis"}', lambda n: n >= 1)
    _eventually(prometheus, 'driftline_dependency_up{dependency="kafka"}', lambda n: n == 1)
    _eventually(
        prometheus,
        'driftline_http_requests_total{route="/v1/events",method="POST",code="200"}',
        lambda n: n == 1,
    )
    _eventually(prometheus, 'driftline_http_request_duration_seconds_count{route="/v1/events"}',
                lambda n: n >= 1)  # fmt: skip
    # Both targets were scraped: the API's series come from its own metrics listener.
    jobs = {found["metric"]["instance"] for found in prometheus.query("up == 1")}
    assert jobs == {f"{worker.host}:{worker.port}", api_metrics}
