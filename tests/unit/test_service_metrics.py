"""The service metrics' rules: a dead letter's reason kind, the dependency gauge, the
notification results, the API's route label, and README's table, which must list exactly
the metrics ``topics/service_metrics.py`` declares."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from driftline.agents.notifier import Delivery, Outcome, count_outcome
from driftline.agents.runtime import RecordTooLargeError, reason_of
from driftline.api.service_metrics import UNMATCHED, record_requests
from driftline.state.alert_rules import Channel, ChannelType
from driftline.state.notifications import Notification
from driftline.topics import service_metrics
from driftline.topics.dead_letters import reason_kind
from driftline.topics.messages import decode_ingest
from driftline.topics.outages import OutageLog

README = Path(__file__).resolve().parents[2] / "README.md"


def _decoded_reason(value: bytes | None, max_bytes: int = 1000) -> str:
    reason = decode_ingest(b"p/m/e", value, received_ms=0, offset=0, ref=0, max_bytes=max_bytes)
    assert isinstance(reason, str)
    return reason


def test_reason_kinds_of_the_reasons_the_code_writes() -> None:
    assert reason_kind(_decoded_reason(None)) == "malformed_json"
    assert reason_kind(_decoded_reason(b"{not json")) == "malformed_json"
    assert reason_kind(_decoded_reason(b"[1, 2]")) == "malformed_json"
    assert reason_kind(_decoded_reason(b"x" * 2000)) == "too_large"
    assert reason_kind(_decoded_reason(b'{"op": "upsert"}')) == "invalid_event"
    no_id = b'{"op": "insert", "project_id": "p", "model_id": "m", "event": {}}'
    assert reason_kind(_decoded_reason(no_id)) == "invalid_event"
    assert reason_kind(reason_of(ValueError("boom"))) == "exception"
    assert reason_kind(reason_of(RecordTooLargeError("it would write ..."))) == "too_large"


def test_reason_kinds_of_the_merge_rules_reasons() -> None:
    # Written by state/events.py, agents/merge.py and agents/runtime.py with these words.
    assert reason_kind("model 'p/m' is not registered") == "unknown_model"
    assert reason_kind("update of event 'e' waited 600s and its insert never arrived (...)") == (
        "parked_update_expired"
    )
    assert reason_kind("event 'e' has no insert yet and already 100 updates wait for it") == (
        "too_many_parked_updates"
    )
    assert reason_kind("the broker refused a record it produced: ...") == "refused_by_broker"


def _sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_an_outage_log_keeps_its_dependencys_gauge() -> None:
    clock = iter(range(100)).__next__
    outage = OutageLog(logging.getLogger("t"), "t", "Unit-Dependency", "waits", clock=clock)
    assert _sample("driftline_dependency_up", dependency="unit-dependency") is None  # unknown
    outage.succeeded()
    assert _sample("driftline_dependency_up", dependency="unit-dependency") == 1
    outage.failed("refused")
    assert _sample("driftline_dependency_up", dependency="unit-dependency") == 0
    outage.succeeded()
    assert _sample("driftline_dependency_up", dependency="unit-dependency") == 1


def test_a_finished_delivery_counts_its_retries_and_its_result() -> None:
    channel = Channel(ChannelType.SLACK, "https://hooks.example/x")
    request = Notification(channel.url, {}, b"{}")
    delivery = Delivery(0, 0, 0, "alert", "change", "rule", 0, channel, request)

    def counted(result: str) -> float:
        name = "driftline_notifications_total"
        return _sample(name, channel_type="slack", result=result) or 0.0

    before = {result: counted(result) for result in ("delivered", "retried", "dead_lettered")}
    for outcome in (Outcome(delivery, 3, None), Outcome(delivery, 4, "HTTP 500"),
                    Outcome(delivery, 1, "HTTP 404")):  # fmt: skip
        count_outcome(outcome)
    after = {result: counted(result) - before[result] for result in before}
    assert after == {"delivered": 1, "retried": 2 + 3, "dead_lettered": 2}


def _requests(route: str, code: str) -> float:
    labels = {"route": route, "method": "GET", "code": code}
    return REGISTRY.get_sample_value("driftline_http_requests_total", labels) or 0.0


def test_requests_are_counted_by_route_template_never_by_path() -> None:
    template = "/v1/models/{project_id}/{model_id}"

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def scenario() -> None:
        app = web.Application(middlewares=[record_requests])
        app.router.add_get(template, ok)
        async with TestClient(TestServer(app)) as client:
            for path in ("/v1/models/p/a", "/v1/models/p/b", "/nowhere/12345"):
                (await client.get(path)).release()

    before = _requests(template, "200"), _requests(UNMATCHED, "404")
    asyncio.run(scenario())
    assert (_requests(template, "200"), _requests(UNMATCHED, "404")) == (
        before[0] + 2,
        before[1] + 1,
    )
    assert _requests("/v1/models/p/a", "200") == 0.0


def _declared() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each metric of topics/service_metrics.py: its exposed name, type and labels."""
    found = {}
    for metric in vars(service_metrics).values():
        if isinstance(metric, MetricWrapperBase):
            described = metric.describe()[0]
            name = described.name + ("_total" if described.type == "counter" else "")
            found[name] = (described.type, tuple(metric._labelnames))
    return found


def _documented() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each row of README's service-metrics table: name, type and label names."""
    section = README.read_text().split("## Service metrics", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(driftline_\w+)` \| (\w+) \|([^|]*)\|", section, re.MULTILINE)
    # A label's values, if given, follow it in parentheses: "`kind` (`bin`, `tombstone`)".
    return {name: (kind, tuple(re.findall(r"`(\w+)`", re.sub(r"\(.*?\)", "", labels))))
            for name, kind, labels in rows}  # fmt: skip


def test_the_readme_table_lists_exactly_the_declared_metrics() -> None:
    assert _documented() == _declared()
