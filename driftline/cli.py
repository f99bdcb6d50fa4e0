"""`driftline`: run the local stack and workers, register models, publish, delete, inspect."""

from __future__ import annotations

import json
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson

from driftline.settings import Settings
from driftline.state import exact_json
from driftline.state.names import split_model_key
from driftline.state.periods import Period


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Driftline: ML model monitoring on Kafka."""
    ctx.obj = Settings.from_env()


# --- the local stack -------------------------------------------------------------------


@main.group()
def stack() -> None:
    """The embedded Kafka broker, Redis and PostgreSQL servers."""


@stack.command("prepare")
@click.pass_obj
def stack_prepare(settings: Settings) -> None:
    """Install what the stack needs (Kafka jars via Maven, redis-server, postgresql), the
    walk-through's kcat and jq and the tests' prometheus, without starting anything."""
    from driftline import stack as local

    local.prepare(settings)
    click.echo("stack prepared")


@stack.command("up")
@click.pass_obj
def stack_up(settings: Settings) -> None:
    """Start Kafka, Redis and PostgreSQL (unless KAFKA_BOOTSTRAP_SERVERS / REDIS_URL /
    DRIFTLINE_POSTGRES_URL name running ones)."""
    from driftline import stack as local

    endpoints = local.up(settings)
    click.echo(f"kafka: {endpoints.bootstrap_servers}")
    click.echo(f"redis: {endpoints.redis_url}")
    click.echo(f"postgres: {endpoints.postgres_url}")


@stack.command("down")
@click.pass_obj
def stack_down(settings: Settings) -> None:
    """Stop the Kafka broker, Redis and PostgreSQL servers this stack started."""
    from driftline import stack as local

    local.down(settings)
    click.echo("stack stopped")


# --- the worker --------------------------------------------------------------------------


@main.command()
@click.option("--port", type=int, help="HTTP port of this worker (DRIFTLINE_WORKER_PORT).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Local state directory.")
@click.option("--loglevel", default="warning", show_default=True)
@click.pass_obj
def worker(settings: Settings, port: int | None, data_dir: Path | None, loglevel: str) -> None:
    """Run a worker (merge agent + HTTP views) until interrupted."""
    from driftline.agents.heap import limit_arenas

    # Before anything starts the threads that would each take an arena.
    limit_arenas(settings.malloc_arenas)
    from driftline.agents.app import QuietWorker, create_app
    from driftline.internal_secret import internal_secret

    if port is not None:
        settings = settings.with_overrides(worker_port=port)
    if data_dir is not None:
        settings = settings.with_overrides(data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    built = create_app(settings, internal_secret(settings))
    QuietWorker(built.app, loglevel=loglevel, quiet=True).execute_from_commandline()


# --- models and events ---------------------------------------------------------------------


@main.command()
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--baseline",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A .csv or .parquet baseline to profile (drift and range checks compare to it).",
)
@click.pass_obj
def register(settings: Settings, spec_file: Path, baseline: Path | None) -> None:
    """Register a model from a JSON spec file.

    Baseline values that contradict a column's type in some rows are printed as warnings
    (in every row: refused).
    """
    from driftline.client import BaselineTypeWarning, Driftline

    raw = json.loads(spec_file.read_text())
    with Driftline(settings) as client, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BaselineTypeWarning)
        model = _or_exit(lambda: client.register_model(raw, baseline))
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    profiled = " with its baseline profile" if model.baseline is not None else ""
    click.echo(f"registered {model.key}{profiled}")


@main.command()
@click.argument("project_id")
@click.argument("model_id")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--update", is_flag=True, help="Partial updates (targets and metadata only).")
@click.pass_obj
def publish(settings: Settings, project_id: str, model_id: str, source: Path, update: bool) -> None:
    """Publish events from a .csv or .parquet file."""
    from driftline.client import Driftline

    with Driftline(settings) as client:
        ids = _or_exit(
            lambda: client.publish_events_batch(
                project_id, model_id, source, update_event=update, progress=True
            )
        )
    click.echo(f"published {len(ids)} {'updates' if update else 'events'}")


@main.command()
@click.argument("arguments", nargs=-1, metavar="[MODEL] [SOURCE]")
@click.option(
    "--project", "project_id", help="The model's project (or MODEL: project_id/model_id)."
)
@click.option("--model", "model_id", help="With --project: the model.")
@click.option("--id-column", help="The source's event id column (default: the spec's).")
@click.option("--timestamp-column", help="The source's event time column (default: the spec's).")
@click.option("--from-topic", help="Backfill from this Kafka topic of JSON records, not files.")
@click.option("--from-bootstrap", help="With --from-topic: its cluster (default: Driftline's).")
@click.option("--map", "pairs", multiple=True, metavar="TARGET=PATH",
              help="With --from-topic: where a record holds event_id, event_timestamp or a "
              "column, e.g. --map event_id=txn.id (repeatable).")  # fmt: skip
@click.option("--restart", is_flag=True, help="Ignore the checkpoint: publish from the start.")
@click.option("--checkpoint-every", default=20_000, show_default=True,
              type=click.IntRange(min=1), help="Rows between two checkpoints.")  # fmt: skip
@click.pass_obj
def backfill(
    settings: Settings,
    arguments: tuple[str, ...],
    project_id: str | None,
    model_id: str | None,
    id_column: str | None,
    timestamp_column: str | None,
    from_topic: str | None,
    from_bootstrap: str | None,
    pairs: tuple[str, ...],
    restart: bool,
    checkpoint_every: int,
) -> None:
    """Publish historical events with their original times, at full speed: SOURCE, a .csv
    or .parquet file or a directory of them, or --from-topic. Resumable: rerun the same
    command after an interruption (the checkpoint lives under DRIFTLINE_HOME/backfills)."""
    from driftline import backfill as backfills
    from driftline.client import Driftline
    from driftline.state.backfill import InvalidMappingError, report_lines
    from driftline.topics.producer import DeliveryError

    if from_topic is None and (pairs or from_bootstrap):
        raise click.UsageError("--map and --from-bootstrap go with --from-topic")
    model, source_path = _backfill_arguments(arguments, project_id, model_id, from_topic)
    with Driftline(settings) as client:
        spec = backfills.with_columns(
            _or_exit(lambda: client.model(*model)), id_column, timestamp_column
        )
        ingest_topic = client.topics.ingest.name
    try:
        source = _or_exit(lambda: backfills.open_source(
            settings, spec, source_path, from_topic, from_bootstrap, pairs))  # fmt: skip
        file = backfills.CheckpointFile.under_home(settings, source, spec)
        checkpoint = backfills.resumed(file, source, restart)
    except (InvalidMappingError, backfills.SourceChangedError) as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"checkpoint: {file.path}", err=True)
    if checkpoint.finished:
        click.echo("already published (rerun with --restart to publish it again):")
        click.echo("\n".join(report_lines(checkpoint.report)))
        return
    run = backfills.Backfill(source, spec, backfills.Publisher(settings, ingest_topic, spec),
                             file, checkpoint)  # fmt: skip
    try:
        result = _or_exit(lambda: run.run(checkpoint_every))
    except DeliveryError as error:
        raise click.ClickException(f"{error}; rerun the command to resume") from error
    finally:
        source.close()
    click.echo("\n".join(report_lines(result.checkpoint.report, result.published,
                                      result.elapsed_s)))  # fmt: skip


def _backfill_arguments(
    arguments: tuple[str, ...],
    project_id: str | None,
    model_id: str | None,
    from_topic: str | None,
) -> tuple[tuple[str, str], Path | None]:
    """The model and the SOURCE path of ``driftline backfill [MODEL] [SOURCE]``: MODEL or
    --project/--model, and SOURCE unless --from-topic."""
    wanted = 0 if from_topic is not None else 1
    if project_id is None and model_id is None:
        if not arguments or (len(arguments) == wanted and Path(arguments[0]).exists()):
            raise click.UsageError("name the model: MODEL (project_id/model_id) or --project "
                                   "and --model")  # fmt: skip
        model, arguments = _model_argument(arguments[0]), arguments[1:]
    elif project_id is None or model_id is None:
        raise click.UsageError("give --project and --model together")
    else:
        model = (project_id, model_id)
    if len(arguments) != wanted:
        raise click.UsageError(
            "give SOURCE (a .csv or .parquet file, a directory of them) or --from-topic TOPIC"
        )
    path = Path(arguments[0]) if arguments else None
    if path is not None and not path.exists():
        raise click.UsageError(f"no such file or directory: {path}")
    return model, path


@main.command()
@click.argument("project_id")
@click.argument("model_id")
@click.argument("event_ids", nargs=-1)
@click.option(
    "--ids-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file with one event id per line.",
)
@click.option("--start", help="Delete from this hour: 'YYYY-MM-DD HH:00:00' (UTC), UTC ms or ISO.")
@click.option("--end", help="... up to this hour (exclusive), in the same forms.")
@click.option(
    "--update-metrics", is_flag=True, help="Retract the deleted events from the metric bins."
)
@click.option("--no-wait", is_flag=True, help="Print the deletion id and return at once.")
@click.pass_obj
def delete(
    settings: Settings,
    project_id: str,
    model_id: str,
    event_ids: tuple[str, ...],
    ids_file: Path | None,
    start: str | None,
    end: str | None,
    update_metrics: bool,
    no_wait: bool,
) -> None:
    """Delete events by id or by time range, through the API (DRIFTLINE_API_URL)."""
    from tqdm import tqdm

    from driftline.client import Driftline

    ids = list(event_ids)
    if ids_file is not None:
        ids.extend(line.strip() for line in ids_file.read_text().splitlines() if line.strip())
    if (start is None) != (end is None):
        raise click.UsageError("a time range needs both --start and --end")
    time_range = None if start is None or end is None else (start, end)
    if ids and time_range is not None:
        raise click.UsageError("delete either by ids or by --start/--end, not both")
    if not ids and time_range is None:
        raise click.UsageError("give event ids (arguments or --ids-file), or --start and --end")
    with Driftline(settings) as client:
        deletion_id = _or_exit(
            lambda: client.delete_events(
                project_id, model_id, ids or None, time_range, update_metrics, wait=False
            )
        )
        click.echo(f"deletion {deletion_id}")
        if no_wait:
            return
        bar = tqdm(unit=" events", desc="deleting", disable=time_range is None)

        def progress(status: dict[str, Any]) -> None:
            bar.update(status["deleted"] - bar.n)
            bar.set_postfix_str(
                f"{status['partitions_done']}/{status['partitions']} partitions done"
            )

        try:
            final = _or_exit(lambda: client.wait_for_deletion(deletion_id, on_progress=progress))
        finally:
            bar.close()
    if final["status"] == "waiting_for_daily_cap":
        click.echo(
            f"deleted {final['deleted']} events so far; the model reached its daily cap and "
            f"the rest goes on after midnight UTC (driftline deletion {deletion_id})"
        )
    else:
        click.echo(f"deleted {final['deleted']} events")


@main.command()
@click.argument("deletion_id")
@click.pass_obj
def deletion(settings: Settings, deletion_id: str) -> None:
    """Print the status of a deletion as JSON."""
    from driftline.client import Driftline

    with Driftline(settings) as client:
        status = _or_exit(lambda: client.deletion_status(deletion_id))
    click.echo(exact_json.dumps(status, option=orjson.OPT_INDENT_2).decode())


# --- the REST API -------------------------------------------------------------------------


@main.group(invoke_without_command=True)
@click.option("--host", help="Address to listen on (DRIFTLINE_API_HOST).")
@click.option("--port", type=int, help="Port to listen on (DRIFTLINE_API_PORT).")
@click.pass_context
def api(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Run the REST API until interrupted (or manage its tokens: `driftline api token`)."""
    if ctx.invoked_subcommand is not None:
        return
    import logging

    from driftline.api.server import run
    from driftline.internal_secret import internal_secret

    settings: Settings = ctx.obj
    if host is not None:
        settings = settings.with_overrides(api_host=host)
    if port is not None:
        settings = settings.with_overrides(api_port=port)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    run(settings, internal_secret(settings), click.echo)


@api.command("token")
@click.option("--project", "projects", multiple=True, help="A project the token may use.")
@click.option("--all-projects", is_flag=True, help="The token may use every project.")
@click.option("--name", default="", help="A name to recognise the token by in the file.")
@click.pass_obj
def api_token(settings: Settings, projects: tuple[str, ...], all_projects: bool, name: str) -> None:
    """Create a bearer token; it is printed once, and only its hash is stored."""
    from driftline.api.auth import create_token

    try:
        token = create_token(settings.api_tokens_file, projects, all_projects, name)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    scope = "every project" if all_projects else ", ".join(sorted(set(projects)))
    click.echo(f"token for {scope} (stored hashed in {settings.api_tokens_file}; shown once):",
               err=True)  # fmt: skip
    click.echo(token)


@main.command()
@click.argument("project_id")
@click.argument("model_id")
@click.argument("event_id")
@click.pass_obj
def show(settings: Settings, project_id: str, model_id: str, event_id: str) -> None:
    """Print one stored event as JSON."""
    from driftline.client import Driftline

    with Driftline(settings) as client:
        event = client.get_event(project_id, model_id, event_id)
    if event is None:
        click.echo(f"no event {event_id} in {project_id}/{model_id}", err=True)
        sys.exit(1)
    click.echo(exact_json.dumps(event, option=orjson.OPT_INDENT_2).decode())


@main.command()
@click.argument("model")
@click.option("--start", required=True, help="UTC ms, ISO 8601 with a zone or "
              "'YYYY-MM-DD HH:MM:SS' (UTC); bins that start at or after it.")  # fmt: skip
@click.option("--end", required=True, help="... and before this, in the same forms.")
@click.option("--bin", "period", type=click.Choice([p.value for p in Period]), default="hour",
              show_default=True, help="Bin size: a day starts at 00:00 UTC, a week on "
              "Monday 00:00 UTC; the bins whose start lies in the range, whole.")  # fmt: skip
@click.pass_obj
def metrics(settings: Settings, model: str, start: str, end: str, period: str) -> None:
    """Print the hour, day or week bins of MODEL (project_id/model_id) between START and END."""
    from driftline.client import Driftline

    project_id, model_id = _model_argument(model)
    with Driftline(settings) as client:
        bins = _or_exit(lambda: client.get_metrics(project_id, model_id, start, end, period))
    click.echo(exact_json.dumps(bins, option=orjson.OPT_INDENT_2).decode())


@main.command()
@click.option("--project", "project_id", help="Check this model's scope and registration too.")
@click.option("--model", "model_id", help="With --project: the model.")
@click.option("--wait", is_flag=True, help="Wait until the bins are final.")
@click.option("--timeout", default=300.0, show_default=True, help="With --wait: give up after.")
@click.pass_obj
def status(
    settings: Settings, project_id: str | None, model_id: str | None, wait: bool, timeout: float
) -> None:
    """The pipeline's lag per stage and whether the bins are final (every event sent so far
    applied). Exit 0 when final, 1 when not (with --wait: when the timeout passes)."""
    from driftline.client import Driftline

    if (project_id is None) != (model_id is None):
        raise click.UsageError("give --project and --model together, or neither")
    named = {} if project_id is None else {"project_id": project_id, "model_id": str(model_id)}
    with Driftline(settings) as client:
        if wait:
            try:
                found = _or_exit(lambda: client.wait_until_final(timeout, **named))
            except click.ClickException as error:
                if not isinstance(error.__cause__, TimeoutError):
                    raise
                click.echo(str(error.__cause__), err=True)
                found = _or_exit(lambda: client.status(**named))
        else:
            found = _or_exit(lambda: client.status(**named))
    for stage in found["stages"]:
        state = "caught up" if stage["caught_up"] else "behind"
        click.echo(f"{stage['stage']:<8} lag {stage['lag']:>10,}  {state}  ({stage['topic']})")
    click.echo(f"final: {'yes' if found['final'] else 'no'}")
    sys.exit(0 if found["final"] else 1)


@main.command("dead-letters")
@click.argument("model", required=False)
@click.option("--limit", default=20, show_default=True, help="How many, oldest first.")
@click.pass_obj
def dead_letters(settings: Settings, model: str | None, limit: int) -> None:
    """Print MODEL's (project_id/model_id) dead letters with their reasons, through the API;
    without MODEL every letter, those naming no model too (a token for all projects)."""
    from driftline.client import Driftline

    named: tuple[str | None, str | None] = (None, None)
    if model is not None:
        named = _model_argument(model)
    with Driftline(settings) as client:
        letters = _or_exit(lambda: client.get_dead_letters(*named, limit=limit))
    for letter in letters:
        source = letter["source"]
        value = (letter["value"] or "")[:200]
        encoding = "" if letter["value_encoding"] in (None, "utf-8") else " (base64)"
        click.echo(
            f"[{source['topic']} {source['partition']}:{source['offset']}] {letter['reason']}\n"
            f"    {value}{encoding}"
        )


@main.group("alert-rules")
def alert_rules() -> None:
    """Manage a model's alert rules through the API."""


@alert_rules.command("list")
@click.argument("model")
@click.pass_obj
def alert_rules_list(settings: Settings, model: str) -> None:
    """Print MODEL's (project_id/model_id) alert rules as JSON, secrets shown as ***."""
    from driftline.client import Driftline

    project_id, model_id = _model_argument(model)
    with Driftline(settings) as client:
        rules = _or_exit(lambda: client.get_alert_rules(project_id, model_id))
    click.echo(exact_json.dumps(rules, option=orjson.OPT_INDENT_2).decode())


@alert_rules.command("create")
@click.argument("rule_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def alert_rules_create(settings: Settings, rule_file: Path) -> None:
    """Create the alert rule of a JSON file (one rule object)."""
    from driftline.client import Driftline

    raw = json.loads(rule_file.read_text())
    with Driftline(settings) as client:
        rule = _or_exit(lambda: client.create_alert_rule(raw))
    click.echo(f"alert rule {rule['project_id']}/{rule['model_id']}/{rule['rule_id']} created")


@alert_rules.command("delete")
@click.argument("rule")
@click.pass_obj
def alert_rules_delete(settings: Settings, rule: str) -> None:
    """Delete RULE (project_id/model_id/rule_id)."""
    from driftline.client import Driftline

    if rule.count("/") != 2:
        raise click.UsageError("RULE is project_id/model_id/rule_id")
    project_id, model_id, rule_id = rule.split("/")
    with Driftline(settings) as client:
        _or_exit(lambda: client.delete_alert_rule(project_id, model_id, rule_id))
    click.echo(f"alert rule {rule} deleted")


@main.command()
@click.argument("project_id")
@click.argument("model_id")
@click.option("--state", default="all", show_default=True, help="open, resolved or all.")
@click.option("--rule", "rule_id", help="Only this rule's alerts.")
@click.option("--bin", "period", type=click.Choice([p.value for p in Period]),
              help="Only alerts on bins of this size.")  # fmt: skip
@click.option("--start", help="Only alerts whose bin starts at or after this (UTC ms, ISO "
              "8601 with a zone or 'YYYY-MM-DD HH:MM:SS' UTC).")  # fmt: skip
@click.option("--end", help="... and before this, in the same forms.")
@click.option("--limit", type=int, help="At most this many, newest bin first.")
@click.pass_obj
def alerts(
    settings: Settings,
    project_id: str,
    model_id: str,
    state: str,
    rule_id: str | None,
    period: str | None,
    start: str | None,
    end: str | None,
    limit: int | None,
) -> None:
    """Print the alerts of PROJECT_ID's MODEL_ID as a table, newest bin first: each bin's
    rule, column, severity, value, threshold and last change."""
    from driftline.client import Driftline

    with Driftline(settings) as client:
        found = _or_exit(
            lambda: client.get_alerts(
                project_id, model_id, state, rule_id, period, start, end, limit
            )
        )
    click.echo("\n".join(alerts_table(found)) if found else "no alerts")


def alerts_table(alerts: list[dict[str, Any]]) -> list[str]:
    """Alerts (as the API answers them) as the lines of a table under a header."""
    header = ("BIN", "RULE", "COLUMN", "SEVERITY", "VALUE", "THRESHOLD", "LAST CHANGE")
    rows = [header, *(_alert_row(alert) for alert in alerts)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]  # fmt: skip


def _alert_row(alert: dict[str, Any]) -> tuple[str, ...]:
    last = alert["changes"][-1]
    return (
        f"{_utc_minute(alert['bin_start_ms'])} {alert['bin']}",
        alert["rule_id"],
        alert["column"] or "-",
        alert["severity"],
        f"{alert['value']:.4g}",
        f"{alert['threshold']:.4g}",
        f"{last['change']} {_utc_minute(last['at_ms'])}",
    )


def _utc_minute(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")


@main.group()
def replay() -> None:
    """Rebuild derived state from what Kafka retains (see README "Replays")."""


@replay.command("bins")
@click.argument("model")
@click.option("--no-wait", is_flag=True, help="Send the request and return at once.")
@click.option("--timeout", default=600.0, show_default=True, help="Give up waiting after.")
@click.pass_obj
def replay_bins(settings: Settings, model: str, no_wait: bool, timeout: float) -> None:
    """Recompute MODEL's (project_id/model_id) bins from the events the worker stores and
    re-emit every one (metrics topic, Redis, PostgreSQL, alerts): after a change of the bin
    rules or metric formulas, or when derived state is lost or suspect."""
    from driftline.client import Driftline
    from driftline.replay import rebuild_bins

    project_id, model_id = _model_argument(model)
    with Driftline(settings) as client:
        _or_exit(lambda: client.model(project_id, model_id))
        asked = rebuild_bins(settings, model)
        click.echo(f"asked {asked} ingest partitions to rebuild {model}'s bins")
        if no_wait:
            return
        _or_exit(lambda: client.wait_until_final(timeout, project_id=project_id,
                                                 model_id=model_id))  # fmt: skip
    click.echo(f"{model}: every bin recomputed and re-emitted")


@replay.command("events")
@click.option(
    "--since",
    required=True,
    help="Replay the ingest messages that arrived at or after this "
    "(UTC ms, ISO 8601 with a zone or 'YYYY-MM-DD HH:MM:SS' UTC).",
)
@click.option("--until", help="... and before this (default: up to the end now).")
@click.pass_obj
def replay_events(settings: Settings, since: str, until: str | None) -> None:
    """Copy the retained ingest messages from --since onto the ingest topic again, in order:
    the event store gets back what it lost (ids make a replayed insert a replacement)."""
    from driftline.replay import replay_events as replay_ingest
    from driftline.state.instants import parse_instant

    try:
        since_ms = parse_instant(since, "--since")
        until_ms = None if until is None else parse_instant(until, "--until")
    except ValueError as error:
        raise click.UsageError(str(error)) from error
    report = replay_ingest(settings, since_ms, until_ms)
    click.echo("\n".join(report.lines()))


@main.command()
@click.option(
    "--hours", default=48, show_default=True, type=click.IntRange(min=2), help="Hours of traffic."
)
@click.option(
    "--events-per-hour", default=120, show_default=True, type=click.IntRange(min=1),
    help="Predictions an hour (below ~100, chance alone may breach the drift rule).",
)  # fmt: skip
@click.option(
    "--out",
    default=Path("driftline-demo"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the PNGs and the values they plot (plotted.json).",
)
@click.pass_obj
def demo(settings: Settings, hours: int, events_per_hour: int, out: Path) -> None:
    """Start the stack, a worker and the API; stream two days of a tumour classifier with
    drift midway and late labels; alerts fire and resolve; plot it."""
    from driftline.demo import missing_dependencies

    if missing := missing_dependencies():
        raise click.ClickException(
            f"the demo needs {' and '.join(missing)}: pip install 'driftline[demo]'"
        )
    from driftline.demo.run import run_demo
    from driftline.demo.story import Shape

    run_demo(settings, Shape(hours, events_per_hour), out)


# --- Grafana -----------------------------------------------------------------------------


@main.group()
def dashboards() -> None:
    """Grafana dashboards of the emitted metrics (PostgreSQL) and of the services (Prometheus)."""


@dashboards.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def dashboards_export(settings: Settings, directory: Path) -> None:
    """Write both dashboards' JSON into DIRECTORY, the model dashboard reading the schema of
    DRIFTLINE_TOPIC_PREFIX, for Grafana to import or provision."""
    from driftline.dashboards.export import export

    for path in export(directory, settings.topic_prefix):
        click.echo(f"wrote {path}")


def _model_argument(model: str) -> tuple[str, str]:
    """A MODEL argument's (project_id, model_id)."""
    if model.count("/") != 1:
        raise click.UsageError("MODEL is project_id/model_id")
    return split_model_key(model)


def _or_exit(action: Any) -> Any:
    """Run a client action; bad input ends the command with its message, not a traceback."""
    from driftline.client import ApiError, InvalidEventError, ModelConflictError, UnknownModelError
    from driftline.state.spec import InvalidSpecError

    try:
        return action()
    except (
        ModelConflictError,
        InvalidEventError,
        UnknownModelError,
        InvalidSpecError,
        FileNotFoundError,
        ApiError,
        TimeoutError,
    ) as error:
        raise click.ClickException(str(error)) from error


if __name__ == "__main__":
    main()
