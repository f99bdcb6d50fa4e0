"""Requests to a running `driftline api` process, and the churn model served behind one.

``call`` answers every status (an error is an ``Answer`` too), so that tests assert on
statuses, headers and bodies alike.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from driftline.api.auth import create_token
from driftline.client import Driftline
from driftline.settings import Settings
from driftline.stack.api import ApiProcess
from driftline.state.bins import HOUR_MS
from driftline.topics.waiting import wait_until
from tests.support.hourly_bins import bins_in_redis
from tests.support.models import CHURN_BASELINE, CHURN_SPEC, HOUR0

StartApi = Callable[..., ApiProcess]  # the ``start_api`` fixture


class Answer:
    def __init__(self, status: int, headers: dict[str, str], raw: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = raw

    @property
    def body(self) -> Any:
        return orjson.loads(self.raw)


def call(
    api: ApiProcess, method: str, path: str, body: Any = None, token: str | None = None
) -> Answer:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    data = None if body is None else orjson.dumps(body)
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(api.url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, dict(error.headers), error.read())


def token_for(api: ApiProcess, *projects: str) -> str:
    """A token for ``projects``, or for every project when none is named."""
    return create_token(api.settings.api_tokens_file, projects, all_projects=not projects)


def reading_through_api(settings: Settings, start_api: StartApi) -> Settings:
    """An API started on ``settings`` (which creates the topics if they are missing: start
    it after anything that creates them with other settings), and ``settings`` with its
    address and a token for every project."""
    api = start_api(settings)
    return settings.with_overrides(api_url=api.url, api_token=token_for(api))


def client_for(api: ApiProcess, token: str) -> Driftline:
    return Driftline(api.settings.with_overrides(api_url=api.url, api_token=token))


def register(settings: Settings) -> None:
    """The churn model with its baseline."""
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)


def serving_shop(
    settings: Settings, start_worker: Callable[..., Any], start_api: StartApi
) -> tuple[ApiProcess, str]:
    """A worker and an API on ``settings``, the churn model registered, a token for shop."""
    start_worker(settings)
    api = start_api(settings)
    register(settings)
    return api, token_for(api, "shop")


def hour(n: int) -> str:
    """The start of the ``n``-th hour after ``HOUR0``, as ``YYYY-MM-DD HH:MM:SS`` (UTC)."""
    return (datetime.fromtimestamp(HOUR0 / 1000, UTC) + timedelta(hours=n)).strftime(
        "%Y-%m-%d %H:%M:%S"
    )


def rows(count: int, hours: int, prefix: str = "e") -> list[dict[str, Any]]:
    """Churn events as ``POST /v1/events`` takes them, spread over ``hours`` from HOUR0."""
    return [
        {"event_id": f"{prefix}-{i:04d}", "event_timestamp": HOUR0 + (i % hours) * HOUR_MS + i,
         "event": {"age": 20 + i % 50, "plan": ["free", "pro"][i % 2], "score": (i % 10) / 10,
                   "churned": None}}
        for i in range(count)
    ]  # fmt: skip


def ids_body(*ids: str, **extra: Any) -> dict[str, Any]:
    """A delete-by-ids request body for the churn model."""
    return {"project_id": "shop", "model_id": "churn", "event_ids": list(ids), **extra}


def published(
    settings: Settings, api: ApiProcess, token: str, events: list[dict[str, Any]]
) -> None:
    """``events`` published through the API, and waited for until the bins count them."""
    answer = call(api, "POST", "/v1/events", {"project_id": "shop", "model_id": "churn",
                  "events": events}, token=token)  # fmt: skip
    assert answer.status == 200, answer.body
    wait_until(
        lambda: sum(b["counts"]["n"] for b in bins_in_redis(settings).values()) == len(events),
        timeout_s=30, what=f"{len(events)} events in the bins",
    )  # fmt: skip


def bin_counts(settings: Settings) -> dict[int, int]:
    """Events per bin in Redis, by hour after HOUR0."""
    return {h - HOUR0 // HOUR_MS: b["counts"]["n"] for h, b in bins_in_redis(settings).items()}
