"""What the pipeline has done, asked from outside as an operator would: the merge agent
caught up, the events table as its changelog holds it, a worker's internal views."""

from __future__ import annotations

import urllib.request
from typing import Any

from driftline.internal_secret import internal_secret
from driftline.settings import Settings
from driftline.state import exact_json
from driftline.state.partition_tables import EVENTS
from driftline.state.store import split_store_key
from driftline.topics.catalog import Topics
from driftline.topics.internal_routes import HEADER
from driftline.topics.progress import merge_progress
from driftline.topics.reading import read_topic


def wait_for_lag_zero(settings: Settings, timeout_s: float = 120) -> None:
    """Until the merge agent's committed offsets reach the ingest topic's end."""
    progress = merge_progress(settings)
    try:
        progress.wait_caught_up(timeout_s)
    finally:
        progress.close()


def stored_events(settings: Settings) -> dict[str, tuple[int, dict[str, Any]]]:
    """The events table as its compacted changelog holds it: last write per key wins."""
    topic = Topics.for_settings(settings).merge_changelog.name
    table: dict[bytes, bytes | None] = {}
    for message in read_topic(settings.bootstrap_servers, topic):
        table[message.key()] = message.value()
    events = {}
    for raw_key, value in table.items():
        name, _ = split_store_key(raw_key)
        if name == EVENTS.name and value is not None:
            stored = exact_json.loads_tagged(value)
            events[stored["id"]] = (stored["ts"], stored["cols"])
    return events


def worker_get(settings: Settings, url: str) -> Any:
    """A worker's internal view, asked as the API asks it (with the shared secret)."""
    request = urllib.request.Request(url, headers={HEADER: internal_secret(settings)})
    with urllib.request.urlopen(request, timeout=10) as response:
        return exact_json.loads(response.read())


def worker_counters(settings: Settings, url: str, model: str) -> dict[str, Any]:
    """A model's counters summed over the partitions the worker at ``url`` holds."""
    from driftline.api.reads import sum_counters

    found = worker_get(settings, f"{url}/internal/models/{model}/counters")["partitions"]
    return sum_counters(found.values())
