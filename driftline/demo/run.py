"""`driftline demo`: two days of a tumour classifier in a few minutes, on a local stack.

``run_demo`` starts the embedded stack, a worker, the REST API and a token, then ``play``
tells the story (``driftline.demo.story``) through the client and the API only: register
the model with its training rows as the baseline, create a drift and an accuracy alert
rule that notify the demo's own webhook receiver, stream 48 hour bins of predictions
with their original past timestamps, hour by simulated hour, while the labels come back
one to eight hours late and out of order. Midway the scanner's calibration slips for six
hours: the drift alert fires on those hours at once, the accuracy alert only when their
labels come back (and, on an hour whose first few labels happen to be the model's
mistakes, it fires on them and the rest clear it). Once every label is in, the
miscalibrated hours are deleted with ``update_metrics=true``: their bins go, and with
them their alerts resolve. Last: the PNGs, the values they plot as JSON, a summary.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from driftline import stack
from driftline.api.auth import create_token
from driftline.client import Driftline
from driftline.demo.plots import write_plots
from driftline.demo.series import (
    AlertMark,
    Counts,
    HourlySeries,
    Plotted,
    alert_marks,
    counted,
    hourly_series,
    served_counts,
    without_range,
)
from driftline.demo.story import (
    ACCURACY_CRITICAL,
    DRIFT_COLUMN,
    LABEL_DELAY_WEIGHTS,
    MISCALIBRATION,
    MODEL,
    PROJECT,
    PSI_CRITICAL,
    TARGET,
    Classifier,
    Event,
    Shape,
    alert_rules,
    label_arrivals,
    model_spec,
    traffic,
    train_classifier,
)
from driftline.demo.webhooks import WebhookReceiver
from driftline.settings import Settings
from driftline.stack.api import ApiProcess
from driftline.stack.kafka import free_port
from driftline.stack.worker import WorkerProcess
from driftline.state.bins import HOUR_MS
from driftline.topics.postgres_tables import schema_name

SEED = 13
PLOTTED_JSON = "plotted.json"


def run_demo(settings: Settings, shape: Shape, out_dir: Path) -> None:
    endpoints = stack.up(settings)
    settings = settings.with_overrides(
        kafka_bootstrap_servers=endpoints.bootstrap_servers,
        redis_url=endpoints.redis_url,
        postgres_url=endpoints.postgres_url,
        topic_prefix=f"demo-{uuid.uuid4().hex[:6]}",
        data_dir=settings.home / "demo-worker",
        worker_port=free_port(),
        api_port=free_port(),
        api_metrics_port=free_port(),
        api_tokens_file=settings.home / "demo-api-tokens.json",
    )
    _say(f"Kafka {endpoints.bootstrap_servers}, Redis {endpoints.redis_url}, "
         f"PostgreSQL {endpoints.postgres_url}")  # fmt: skip
    worker = WorkerProcess(settings, settings.home / "demo-worker.log").start()
    _say(f"worker ready at {worker.url} (log: {worker.log_path})")
    api = ApiProcess(settings, settings.home / "demo-api.log").start()
    _say(f"REST API ready at {api.url} (OpenAPI: {api.url}/openapi.yaml)")
    token = create_token(settings.api_tokens_file, [PROJECT], name="demo")
    try:
        with Driftline(settings.with_overrides(api_url=api.url, api_token=token)) as client:
            play(client, shape, out_dir)
    finally:
        api.stop()
        worker.stop()
    _grafana(settings)


def _grafana(settings: Settings) -> None:
    """Where Grafana finds what the demo did: the worker projected its bins and alerts
    into PostgreSQL, in the schema of its topic prefix."""
    lines = (
        f"Grafana: the demo's bins and alerts are in PostgreSQL too ({settings.postgres_url}, "
        f"schema {schema_name(settings.topic_prefix)}).",
        "With Docker, `docker compose up --build` runs the stack with Grafana and both "
        "dashboards on http://localhost:3000",
        "(README, Grafana); the model dashboard for this run's schema:",
        f"  DRIFTLINE_TOPIC_PREFIX={settings.topic_prefix} driftline dashboards export "
        "./dashboards",
        "The local stack keeps running: `driftline stack down` stops it.",
    )
    click.echo("\n" + "\n".join(lines))


def play(client: Driftline, shape: Shape, out_dir: Path) -> Plotted:
    """The story on a running worker and API (``client`` reads through the API); writes
    the PNGs and ``plotted.json`` into ``out_dir`` and returns what they plot."""
    classifier = train_classifier(SEED)
    first_hour_ms = (int(time.time() * 1000) // HOUR_MS - shape.hours) * HOUR_MS
    hour_ms = [first_hour_ms + hour * HOUR_MS for hour in range(shape.hours)]
    events = traffic(classifier, shape, first_hour_ms, SEED)
    with WebhookReceiver() as receiver:
        _introduce(client, classifier, receiver, shape, first_hour_ms)
        step_starts_ms, expected = _stream(client, receiver, shape, hour_ms, events)
        _wait_notified(client, receiver)
        streamed = client.get_metrics(PROJECT, MODEL, hour_ms[0], hour_ms[-1] + HOUR_MS)
        deleted_ms = (hour_ms[shape.incident_hours.start],
                      hour_ms[shape.incident_hours.stop - 1] + HOUR_MS)  # fmt: skip
        deletion_ms = _delete_incident(client, deleted_ms)
        _wait_served(client, hour_ms, without_range(expected, deleted_ms))
        _wait_notified(client, receiver, all_resolved=True)
        final = client.get_metrics(PROJECT, MODEL, hour_ms[0], hour_ms[-1] + HOUR_MS)
        alerts = client.get_alerts(PROJECT, MODEL)
        plotted = Plotted(
            hour_ms=hour_ms, drift_column=DRIFT_COLUMN, psi_critical=PSI_CRITICAL,
            accuracy_critical=ACCURACY_CRITICAL, deleted_ms=deleted_ms,
            streamed=hourly_series(streamed, hour_ms, DRIFT_COLUMN),
            final=hourly_series(final, hour_ms, DRIFT_COLUMN),
            alerts=alert_marks(alerts, step_starts_ms, deletion_ms),
            webhook=[n["change_id"] for n in receiver.notifications()],
        )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / PLOTTED_JSON).write_bytes(plotted.to_json())
    pngs = write_plots(plotted, out_dir)
    _summary(plotted, shape, first_hour_ms)
    _say(f"plots: {', '.join(str(path) for path in pngs)}; their values: {out_dir / PLOTTED_JSON}")
    return plotted


def _introduce(
    client: Driftline,
    classifier: Classifier,
    receiver: WebhookReceiver,
    shape: Shape,
    first_hour_ms: int,
) -> None:
    """Register the model and its rules, and say what is about to happen."""
    seen = len(classifier.baseline)
    unseen = classifier.unseen.drop(columns=[TARGET])
    accuracy = classifier.pipeline.score(unseen, classifier.unseen[TARGET])
    _say(f"trained a logistic regression on scikit-learn's breast cancer data set ({seen} "
         f"biopsies; {accuracy:.0%} right on the {len(unseen)} it did not see)")  # fmt: skip
    client.register_model(model_spec(), classifier.baseline)
    for rule in alert_rules(receiver.channel):
        client.create_alert_rule(rule)
    _say(f"registered {PROJECT}/{MODEL} (its training rows are the drift baseline); alert "
         f"rules: PSI({DRIFT_COLUMN}) > {PSI_CRITICAL}, accuracy < {ACCURACY_CRITICAL}, "
         f"both to the demo's webhook {receiver.url}")  # fmt: skip
    incident = shape.incident_hours
    scales = ", ".join(f"{column} x{factor:.2f}" for column, factor in MISCALIBRATION.items())
    _say(f"streaming {shape.hours} hours from {_clock(first_hour_ms)} UTC, "
         f"{shape.events_per_hour} predictions an hour, labels {min(LABEL_DELAY_WEIGHTS)}-"
         f"{max(LABEL_DELAY_WEIGHTS)} hours later in any order; "
         f"from {_clock(first_hour_ms + incident.start * HOUR_MS)} for {len(incident)} hours "
         f"the scanner's calibration slips ({scales})")  # fmt: skip


def _stream(
    client: Driftline,
    receiver: WebhookReceiver,
    shape: Shape,
    hour_ms: Sequence[int],
    events: Sequence[Event],
) -> tuple[list[int], Counts]:
    """Each simulated hour: its predictions, then the labels coming back in it, the API
    serving them in the bins before the next; one line each. Returns when (wall clock,
    ms) each began, and the counts served at the end."""
    labels = label_arrivals(list(events), SEED)
    click.echo(f"  {'simulated hour':<16} {'events':>6} {'labels':>6}  webhook")
    step_starts_ms: list[int] = []
    expected: Counts = {}
    shown = 0
    for step in range(shape.steps):
        step_starts_ms.append(int(time.time() * 1000))
        published = [e for e in events if e.hour == step]
        if published:
            client.publish_events_batch(PROJECT, MODEL, [e.published() for e in published])
        arriving = labels.get(step, [])
        if arriving:
            client.publish_events_batch(PROJECT, MODEL, [e.label() for e in arriving],
                                        update_event=True)  # fmt: skip
        expected = counted(expected, hour_ms, published, arriving)
        _wait_served(client, hour_ms, expected)
        _settle(client, receiver)
        taken = receiver.notifications()
        heard = "; ".join(_notification_text(n) for n in taken[shown:])
        shown = len(taken)
        line = f"  {_clock(hour_ms[0] + step * HOUR_MS):<16} {len(published):>6} {len(arriving):>6}"
        click.echo(f"{line}  {heard}" if heard else line)
    return step_starts_ms, expected


def _wait_served(
    client: Driftline, hour_ms: Sequence[int], expected: Counts, timeout_s: float = 120
) -> None:
    """Until the API serves, for each hour bin, the events and labels ``expected`` (a bin
    absent where none is): the pipeline has applied what was sent. Cheaper to ask than
    ``GET /v1/status``, which reads every stage's offsets."""
    deadline = time.monotonic() + timeout_s
    while True:
        bins = client.get_metrics(PROJECT, MODEL, hour_ms[0], hour_ms[-1] + HOUR_MS)
        if served_counts(bins) == expected:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the API does not serve the bins expected after {timeout_s:.0f}s")
        time.sleep(0.1)


def _notification_text(notification: dict[str, Any]) -> str:
    change, rule = notification["change"]["change"].upper(), notification["rule_id"]
    value = notification["change"]["value"]
    return f"{change} {rule} on {_clock(notification['bin_start_ms'])} ({value:.2f})"


def _delete_incident(client: Driftline, deleted_ms: tuple[int, int]) -> int:
    """Delete the miscalibrated hours, retracting them from the bins; when it was asked."""
    start_ms, end_ms = deleted_ms
    _say(f"every label is in. Deleting the miscalibrated scans, {_clock(start_ms)} to "
         f"{_clock(end_ms)} UTC, through the API with update_metrics=true")  # fmt: skip
    asked_ms = int(time.time() * 1000)
    status = client.delete_events(PROJECT, MODEL, time_range=(start_ms, end_ms),
                                  update_metrics=True)  # fmt: skip
    assert isinstance(status, dict)
    _say(f"deletion {status['deletion_id']}: {status['status']}, {status['deleted']} deleted")
    return asked_ms


def _wait_notified(
    client: Driftline, receiver: WebhookReceiver, all_resolved: bool = False, timeout_s: float = 60
) -> None:
    """Until the webhook took every change of every alert (and, with ``all_resolved``,
    none is open)."""
    deadline = time.monotonic() + timeout_s
    while not _all_notified(client, receiver, all_resolved):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the webhook did not take every alert change in {timeout_s:.0f}s")
        time.sleep(0.2)


def _settle(client: Driftline, receiver: WebhookReceiver) -> None:
    """A moment for the alert evaluator to judge the bins a simulated hour changed (it
    reads them beside the projection the API serves) and for the webhook to take what
    changed, so that each line shows its hour's notifications: at least 0.3 s, at most
    1.5 s, since a change not yet judged cannot be waited for."""
    started = time.monotonic()
    time.sleep(0.3)
    while time.monotonic() - started < 1.5 and not _all_notified(client, receiver):
        time.sleep(0.1)


def _all_notified(client: Driftline, receiver: WebhookReceiver, all_resolved: bool = False) -> bool:
    alerts = client.get_alerts(PROJECT, MODEL)
    changes = sum(len(alert["changes"]) for alert in alerts)
    settled = not all_resolved or not any(alert["open"] for alert in alerts)
    return settled and len(receiver.notifications()) >= changes


def _summary(plotted: Plotted, shape: Shape, first_hour_ms: int) -> None:
    incident = shape.incident_hours
    phases = {
        "before the incident": range(incident.start),
        "the incident (deleted)": incident,
        "after it": range(incident.stop, shape.hours),
    }
    click.secho("\nSummary (hourly bins through GET /v1/metrics):", bold=True)
    click.echo(f"  {'hours':<28} {'events':>6} {'labelled':>8} "
               f"{f'mean PSI({plotted.drift_column})':>22} {'mean accuracy':>13}")  # fmt: skip
    for name, hours in phases.items():
        series = plotted.streamed if hours is incident else plotted.final
        click.echo(_phase_line(f"{name}, {len(hours)}", series, hours))
    click.secho(f"\nAlerts (GET /v1/alerts; the webhook took {len(plotted.webhook)} "
                "notifications):", bold=True)  # fmt: skip
    click.echo(f"  {'bin (UTC)':<16} {'rule':<13} {'fired with':>10} {'fired at':<16} "
               "resolved")  # fmt: skip
    for mark in plotted.alerts:
        click.echo(_alert_line(mark, first_hour_ms))


def _phase_line(name: str, series: HourlySeries, hours: range) -> str:
    def total(values: list[int | None]) -> int:
        return sum(values[hour] or 0 for hour in hours)

    def mean(values: list[float | None]) -> str:
        found = [value for hour in hours if (value := values[hour]) is not None]
        return f"{sum(found) / len(found):.3f}" if found else "-"

    return (f"  {name:<28} {total(series.events):>6} {total(series.labelled):>8} "
            f"{mean(series.psi):>22} {mean(series.accuracy):>13}")  # fmt: skip


def _alert_line(mark: AlertMark, first_hour_ms: int) -> str:
    fired_at = _clock(first_hour_ms + mark.fired_step * HOUR_MS)
    if mark.resolved_by == "deletion":
        resolved = "by the deletion"
    elif mark.resolved_step is None:
        resolved = "still open"
    else:
        why = "later labels" if mark.column is None else "the rest of its events"
        resolved = f"at {_clock(first_hour_ms + mark.resolved_step * HOUR_MS)}, by {why}"
    return (f"  {_clock(mark.bin_start_ms):<16} {mark.rule_id:<13} {mark.fired_value:>10.3f} "
            f"{fired_at:<16} {resolved}")  # fmt: skip


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%a %d %H:%M")


def _say(message: str) -> None:
    click.echo(f"driftline demo: {message}")
