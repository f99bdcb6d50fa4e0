"""Reads a client makes through the API: one event, a model's counters, dead letters, and
the pipeline's progress (``GET /v1/status``: "are my bins final?").

Before these, a client read events and counters from a worker's port (no token, any
project) and dead letters and progress only with a Kafka reader. Each route here checks
the token's project scope like the others; the worker reads go to the partitions'
owners through ``api.workers`` with the secret only the API and the workers share.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from driftline.api import app as core
from driftline.api.requests import RequestError, bad_request, model_name, takes_query
from driftline.api.workers import Workers
from driftline.state.counters import ModelCounters
from driftline.state.names import model_key
from driftline.state.wording import shown
from driftline.topics.catalog import Topics
from driftline.topics.dead_letters import DeadLetter, StoredLetter, letter_model, read_letters_page
from driftline.topics.messages import FORWARDED_FROM, ingest_key
from driftline.topics.partitioning import partition_for
from driftline.topics.progress import ProgressReader, StageProgress

DEFAULT_DEAD_LETTERS = 100
MAX_DEAD_LETTERS = 1000
# Dead letters one page looks at, at most: a model with few letters among many others'
# gets a short page and a cursor rather than a request that reads the whole topic.
DEAD_LETTERS_SCANNED = 20_000
# The scope in the cursor of the all-models listing (a model's scope always holds a '/').
ALL_MODELS = "*"


# --- one event ---------------------------------------------------------------------------


async def get_event(request: web.Request) -> web.Response:
    """``GET /v1/events/{project_id}/{model_id}/{event_id}``: the event as stored."""
    services = request.app[core.SERVICES]
    project_id, model_id = _model_in_path(request)
    event_id = request.match_info["event_id"]
    await core._spec(services, project_id, model_id)
    key = ingest_key(project_id, model_id, event_id)
    partition = partition_for(key, services.settings.ingest_partitions)
    event = await services.workers.event(partition, model_key(project_id, model_id), event_id)
    if event is None:
        raise RequestError(
            404, f"no event {shown(event_id)} in model {project_id}/{model_id} (never stored, "
            "deleted, or not applied yet: GET /v1/status says when everything sent is)",
        )  # fmt: skip
    return core.json_response({"project_id": project_id, "model_id": model_id, **event})


# --- counters ----------------------------------------------------------------------------


async def get_counters(request: web.Request) -> web.Response:
    """``GET /v1/models/{project_id}/{model_id}/counters``: summed over every partition."""
    services = request.app[core.SERVICES]
    project_id, model_id = _model_in_path(request)
    await core._spec(services, project_id, model_id)
    partitions = services.settings.ingest_partitions
    found = await services.workers.counters(model_key(project_id, model_id), partitions)
    body = {"project_id": project_id, "model_id": model_id, **sum_counters(found.values())}
    return core.json_response(body)


def sum_counters(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per-partition counters (as the workers answer them) summed into one record."""
    total, parked, count = ModelCounters(), 0, 0
    for record in records:
        total = total.plus(ModelCounters.from_dict(record))
        parked += int(record.get("parked_updates", 0))
        count += 1
    body = total.to_dict()
    body["dropped_fields"] = dict(Counter(body["dropped_fields"]).most_common())
    return {**body, "parked_updates": parked, "partitions": count}


# --- dead letters --------------------------------------------------------------------------


@takes_query("limit", "cursor")
async def get_model_dead_letters(request: web.Request) -> web.Response:
    """``GET /v1/models/{project_id}/{model_id}/dead-letters``: the letters whose key
    names the model, oldest first, paged with a cursor."""
    services = request.app[core.SERVICES]
    project_id, model_id = _model_in_path(request)
    await core._spec(services, project_id, model_id)
    model = model_key(project_id, model_id)
    return await _dead_letters(request, model, lambda letter: letter_model(letter.key) == model)


@takes_query("limit", "cursor")
async def get_all_dead_letters(request: web.Request) -> web.Response:
    """``GET /v1/dead-letters``: every letter, those that name no model included; only
    for tokens of all projects (a letter that names no model may be any project's)."""
    if not request["principal"].all_projects:
        raise RequestError(
            403,
            "only a token for all projects may list every dead letter (some name no model, "
            "so no project); read one model's with GET /v1/models/{project_id}/{model_id}/"
            "dead-letters",
        )
    return await _dead_letters(request, ALL_MODELS, lambda letter: True)


async def _dead_letters(
    request: web.Request, scope: str, wanted: Callable[[DeadLetter], bool]
) -> web.Response:
    services = request.app[core.SERVICES]
    limit, start = parse_page(request.query, scope)
    found, next_offset = await asyncio.to_thread(
        read_letters_page,
        services.settings.bootstrap_servers,
        services.topics.dead_letters.name,
        start,
        wanted,
        limit,
        DEAD_LETTERS_SCANNED,
    )
    next_cursor = None if next_offset is None else encode_cursor(scope, next_offset)
    body = {"dead_letters": [letter_json(stored) for stored in found], "next_cursor": next_cursor}
    return core.json_response(body)


def parse_page(query: Mapping[str, str], scope: str) -> tuple[int, int]:
    """``limit`` and ``cursor`` of a dead-letter page: (limit, the offset to read from)."""
    raw_limit = query.get("limit", str(DEFAULT_DEAD_LETTERS))
    try:
        limit = int(raw_limit)
    except ValueError:
        raise bad_request(f"'limit' must be a whole number; got {shown(raw_limit)}") from None
    if not 1 <= limit <= MAX_DEAD_LETTERS:
        raise bad_request(f"'limit' must be between 1 and {MAX_DEAD_LETTERS:,}; got {limit}")
    cursor = query.get("cursor")
    return limit, 0 if cursor is None else decode_cursor(cursor, scope)


def encode_cursor(scope: str, offset: int) -> str:
    raw = orjson.dumps({"m": scope, "o": offset})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, scope: str) -> int:
    """The offset a cursor goes on from; refused when it came from another listing."""
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        cursor_scope, offset = str(raw["m"]), int(raw["o"])
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise bad_request(
            "'cursor' is not one this API gave; pass next_cursor as it came"
        ) from None
    if offset < 0:
        raise bad_request("'cursor' is not one this API gave; pass next_cursor as it came")
    if cursor_scope != scope:
        where = "every model" if cursor_scope == ALL_MODELS else f"model {cursor_scope}"
        raise bad_request(
            f"this cursor continues the dead letters of {where}; use it with that listing, "
            "or start this one without a cursor"
        )
    return offset


def letter_json(stored: StoredLetter) -> dict[str, Any]:
    """A dead letter for JSON: bytes as text when they are UTF-8, else base64."""
    letter: DeadLetter = stored.letter
    key, key_encoding = _text_or_base64(letter.key)
    value, value_encoding = _text_or_base64(letter.value)
    return {
        "offset": stored.offset,
        "time": _iso(stored.timestamp_ms),
        "model": letter_model(letter.key),
        "reason": letter.reason,
        "source": {
            "topic": letter.source_topic,
            "partition": letter.source_partition,
            "offset": letter.source_offset,
        },
        "key": key,
        "key_encoding": key_encoding,
        "value": value,
        "value_encoding": value_encoding,
        # The original value's length when the letter had to cut it; null: kept whole.
        "truncated_from": None if letter.truncated_from < 0 else letter.truncated_from,
    }


def _text_or_base64(raw: bytes | None) -> tuple[str | None, str | None]:
    if raw is None:
        return None, None
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode(), "base64"


# --- the pipeline's progress -----------------------------------------------------------------


@takes_query("project_id", "model_id")
async def get_status(request: web.Request) -> web.Response:
    """``GET /v1/status[?project_id=&model_id=]``: each stage's lag, and ``final``: every
    message produced before this request has been applied to the bins in Redis.

    The stages are checked in the pipeline's order, each topic's end read only once the
    stage before is known to be done, so what a stage produced for the messages sent
    before the request is inside the end the next stage is compared with. The pipeline
    is shared: with a model named, the answer is the same (its scope is checked).
    """
    services = request.app[core.SERVICES]
    named = _optional_model(request.query)
    if named is not None:
        core._check_scope(request, named[0])
        await core._spec(services, *named)
    settings, topics = services.settings, services.topics
    reader = await asyncio.to_thread(ProgressReader, settings.bootstrap_servers)
    try:
        merge = await asyncio.to_thread(
            reader.stage, "merge", topics.ingest.name, settings.ingest_partitions,
            lambda: reader.committed(topics.merge_group, topics.ingest.name,
                                     settings.ingest_partitions),
        )  # fmt: skip
        if merge.caught_up:
            merge = await asyncio.to_thread(_past_forwarded_copies, reader, merge, topics, settings)
        bins = await asyncio.to_thread(
            reader.stage, "bins", topics.bin_partials.name, settings.bins_partitions,
            lambda: reader.committed(topics.bins_group, topics.bin_partials.name,
                                     settings.bins_partitions),
        )  # fmt: skip
        unemitted = await _unemitted_bins(services.workers, settings)
        serving = await asyncio.to_thread(
            reader.stage, "serving", topics.metrics.name, settings.bins_partitions,
            lambda: services.bins.markers(range(settings.bins_partitions)),
        )  # fmt: skip
        notifications = await asyncio.to_thread(_notifications, reader, topics)
    finally:
        await asyncio.to_thread(reader.close)
    body = {**status_body(merge, bins, unemitted, serving, topics), "notifications": notifications}
    if named is not None:
        body = {"project_id": named[0], "model_id": named[1], **body}
    return core.json_response(body)


def _past_forwarded_copies(
    reader: ProgressReader, merge: StageProgress, topics: Topics, settings: core.ApiSettings
) -> StageProgress:
    """A message sent to another partition than its key's (another partitioner) is applied
    as a copy the merge agent appends to its key's partition, past the ends just read: the
    merge stage is done only once it is past those copies too."""
    needed = reader.copies_since(
        topics.ingest.name, settings.ingest_partitions, merge.ends, FORWARDED_FROM
    )
    if needed is None:
        return replace(merge, caught_up=False)
    if not needed:
        return merge
    committed = reader.committed(topics.merge_group, topics.ingest.name, settings.ingest_partitions)
    done = all((committed.get(p) or 0) >= offset for p, offset in needed.items())
    return replace(merge, caught_up=done)


async def _unemitted_bins(workers: Workers, settings: core.ApiSettings) -> int | None:
    """Bins the bins agents have changed but not yet emitted (they wait out the emit
    interval); None when some bins partition's worker did not answer."""
    answers = await workers.progress(settings.ingest_partitions)
    covered = {p for answer in answers for p in answer.get("bins_partitions", [])}
    if covered != set(range(settings.bins_partitions)):
        return None
    return sum(int(answer.get("dirty_bins", 0)) for answer in answers)


def _notifications(reader: ProgressReader, topics: Topics) -> dict[str, Any]:
    """The notifier's progress: alert changes not yet done (delivered or dead-lettered),
    and the notifications given up on (the records of the dead-letters topic, which keeps
    them for the broker's retention)."""
    alerts = topics.alerts
    notifier = reader.stage(
        "notifier", alerts.name, alerts.partitions,
        lambda: reader.committed(topics.notifier_group, alerts.name, alerts.partitions),
    )  # fmt: skip
    failed = reader.records(
        topics.notification_dead_letters.name, topics.notification_dead_letters.partitions
    )
    return notifications_body(notifier, failed, topics)


def notifications_body(notifier: StageProgress, failed: int, topics: Topics) -> dict[str, Any]:
    """The ``notifications`` section of ``GET /v1/status``. The alerts are written in
    transactions, whose commit markers take offsets too: a notifier that is caught up has
    nothing pending, whatever its lag in offsets."""
    return {
        "pending": 0 if notifier.caught_up else notifier.lag,
        "failed": failed,
        "consumer_group": topics.notifier_group,
    }


def status_body(
    merge: StageProgress,
    bins: StageProgress,
    unemitted: int | None,
    serving: StageProgress,
    topics: Topics,
) -> dict[str, Any]:
    """The answer of ``GET /v1/status``; final only when every stage is done."""
    bins_row = {**bins.to_dict(), "unemitted_bins": unemitted}
    bins_done = bins.caught_up and unemitted == 0
    bins_row["caught_up"] = bins_done
    final = merge.caught_up and bins_done and serving.caught_up
    groups = [topics.merge_group, topics.bins_group, topics.serving_group]
    stages = [merge.to_dict(), bins_row, serving.to_dict()]
    for stage, group in zip(stages, groups, strict=True):
        stage["consumer_group"] = group
    return {"final": final, "stages": stages, "checked_at": _iso(_now_ms())}


# --- helpers -------------------------------------------------------------------------------


def _model_in_path(request: web.Request) -> tuple[str, str]:
    project_id = request.match_info["project_id"]
    model_id = request.match_info["model_id"]
    core._check_scope(request, project_id)
    return project_id, model_id


def _optional_model(query: Mapping[str, str]) -> tuple[str, str] | None:
    project_id, model_id = query.get("project_id"), query.get("model_id")
    if project_id is None and model_id is None:
        return None
    if project_id is None or model_id is None:
        raise bad_request("give both 'project_id' and 'model_id', or neither")
    return model_name(query, "project_id"), model_name(query, "model_id")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)
