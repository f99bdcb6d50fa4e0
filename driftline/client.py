"""The Python client: register models, publish, update and delete events, read them back.

A convenience over the documented topic format (``topics/SCHEMAS.md``): any Kafka
producer that follows it works the same. The client refuses bad input before anything is
sent (clear errors), and raises when the broker did not accept a message.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from tqdm import tqdm

from driftline.settings import Settings
from driftline.state import exact_json
from driftline.state.baseline import BaselineTypeError, check_baseline, spec_from_data
from driftline.state.events import dropped_insert_fields, dropped_update_fields
from driftline.state.names import model_key
from driftline.state.registered import RegisteredModel
from driftline.state.spec import ModelSpec
from driftline.state.tabular import (
    InvalidEventError,
    OutgoingEvent,
    Source,
    count_rows,
    iter_rows,
    outgoing_event,
)
from driftline.state.wording import shown
from driftline.topics.admin import ensure_topics
from driftline.topics.catalog import Topics
from driftline.topics.messages import encode_ingest, ingest_key
from driftline.topics.model_registry import ModelConflictError, ModelRegistry, register_model
from driftline.topics.producer import CheckedProducer

__all__ = [
    "ApiError",
    "BaselineTypeError",
    "BaselineTypeWarning",
    "Driftline",
    "DroppedFieldsWarning",
    "InvalidEventError",
    "ModelConflictError",
    "UnknownModelError",
]

# How many ids one lookup request takes (the API refuses more).
MAX_LOOKUP_IDS = 10_000

# (start, end) or {"start_time": ..., "end_time": ...}, each on the hour: UTC ms, ISO 8601
# with a zone, "YYYY-MM-DD HH:00:00" (UTC), or an aware datetime.
Instant = int | str | datetime
TimeRange = tuple[Instant, Instant] | Mapping[str, Instant]


class ApiError(RuntimeError):
    """The REST API refused a request; ``status`` is its HTTP status, the text its reason."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str]) -> None:
        super().__init__(f"{message} (HTTP {status})" if status else message)
        self.status = status
        self.message = message
        self.headers = dict(headers)


class UnknownModelError(LookupError):
    """Publishing to a model that was never registered."""


class BaselineTypeWarning(UserWarning):
    """Some baseline values contradict their column's type (they count as mismatches)."""


class DroppedFieldsWarning(UserWarning):
    """Fields the worker will drop: an update's inputs, outputs or decisions (not updatable),
    or an insert's columns that the spec does not list."""


class EventId(str):
    """The id of a published event; ``dropped_fields`` lists what the worker will drop."""

    dropped_fields: tuple[str, ...] = ()


class Driftline:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.topics = Topics.for_settings(self.settings)
        self._producer = CheckedProducer(self.settings.bootstrap_servers)
        self._registry: ModelRegistry | None = None

    # --- models -------------------------------------------------------------------

    def create_topics(self) -> None:
        ensure_topics(self.settings.bootstrap_servers, self.topics.owned)

    def register_model(
        self, spec: ModelSpec | Mapping[str, Any], baseline: Source | None = None
    ) -> RegisteredModel:
        """Register a model; every worker learns it from the registry topic.

        ``baseline`` (dicts, a DataFrame, a .csv or .parquet path) is profiled once here:
        its bin edges, categories and histograms are what drift and range checks compare
        production against. The rows themselves are not kept. A baseline whose values
        contradict a column's type everywhere is refused (``BaselineTypeError``); in some
        rows only, a ``BaselineTypeWarning`` says which column and types. Registering the
        identical model again changes nothing; a different one raises
        ``ModelConflictError``.
        """
        if not isinstance(spec, ModelSpec):
            spec = ModelSpec.from_dict(spec)
        profile = None
        if baseline is not None:
            checked = check_baseline(spec, iter_rows(baseline))
            profile = checked.profile
            for warning in checked.warnings:
                warnings.warn(warning, BaselineTypeWarning, stacklevel=2)
        model = RegisteredModel(spec, profile)
        register_model(self._producer, self.topics.models.name, self._models(), model)
        return model

    def register_model_from_data(
        self, project_id: str, model_id: str, baseline: Source, **roles: Any
    ) -> RegisteredModel:
        """Infer the column types from the baseline (``from_data``), then register."""
        rows = list(iter_rows(baseline))
        if not all(isinstance(row, Mapping) for row in rows):
            raise InvalidEventError("every baseline row must be a dict of column values")
        spec = spec_from_data(project_id, model_id, rows, **roles)
        return self.register_model(spec, rows)

    def model(self, project_id: str, model_id: str) -> ModelSpec:
        spec = self._models().spec(model_key(project_id, model_id))
        if spec is None:
            raise UnknownModelError(
                f"model {project_id}/{model_id} is not registered; register it first "
                "(Driftline.register_model or `driftline register`)"
            )
        return spec

    # --- publishing ---------------------------------------------------------------

    def publish_event(
        self,
        project_id: str,
        model_id: str,
        event: Mapping[str, Any],
        event_id: str | int | None = None,
        update_event: bool = False,
        event_timestamp: int | Any = None,
        wait: bool = True,
    ) -> EventId:
        """Publish one event (or a partial update) and return its id.

        With ``wait`` (the default) this returns once the broker has the message, and
        raises ``DeliveryError`` if it refused it; without, call ``flush()`` later.
        """
        if not isinstance(event, Mapping):
            raise InvalidEventError(f"event must be a dict of column values, got {shown(event)}")
        spec = self.model(project_id, model_id)
        outgoing = outgoing_event(
            spec, event, update=update_event, event_id=event_id, event_timestamp=event_timestamp
        )
        published = self._send(spec, outgoing, update_event)
        if wait:
            self._producer.flush()
        return published

    def publish_events_batch(
        self,
        project_id: str,
        model_id: str,
        source: Source,
        update_event: bool = False,
        progress: bool = False,
    ) -> list[str]:
        """Publish many events (dicts, a DataFrame, a .csv or .parquet path); return their ids.

        Every row is checked before it is sent; a bad row raises with its row number, and
        rows before it that were sent are flushed first so that nothing valid is lost.
        """
        spec = self.model(project_id, model_id)
        ids: list[str] = []
        dropped: Counter[str] = Counter()
        rows = iter_rows(source, text_columns=[spec.event_id_col])
        bar = tqdm(total=count_rows(source), unit="event", disable=not progress)
        try:
            for number, row in enumerate(rows):
                outgoing = outgoing_event(spec, row, update=update_event, where=f"row {number}")
                published = self._send(spec, outgoing, update_event, warn=False)
                dropped.update(published.dropped_fields)
                ids.append(published)
                if number % 1000 == 999:
                    self._producer.poll()
                    bar.update(1000)
        finally:
            self._producer.flush()
            bar.update(len(ids) - bar.n)
            bar.close()
        if dropped:
            _warn_dropped(sorted(dropped), update_event)
        return ids

    def delete_events(
        self,
        project_id: str,
        model_id: str,
        event_ids: Iterable[str | int] | None = None,
        time_range: TimeRange | None = None,
        update_metrics: bool = False,
        wait: bool = True,
        timeout_s: float = 600.0,
    ) -> dict[str, Any] | str:
        """Delete events by ids (up to 10,000) or by hour-aligned UTC time range, via the API.

        ``time_range`` is ``(start, end)`` or ``{"start_time": ..., "end_time": ...}``, each
        on the hour: UTC ms, ISO 8601 with a zone, ``"YYYY-MM-DD HH:00:00"`` (UTC) or a
        timezone-aware datetime, the forms every route takes; events
        with ``start <= t < end`` are deleted. ``update_metrics`` retracts them from the
        metric bins (by default the bins keep their values). With ``wait`` this returns
        the final status (``status``, ``deleted``, ...) once every partition is done, or
        waits for the daily cap; without, the deletion id. Raises ``ApiError`` with the
        API's message when it refuses the request (400, 404, 429 ...).
        """
        self.model(project_id, model_id)
        body: dict[str, Any] = {
            "project_id": project_id,
            "model_id": model_id,
            "update_metrics": update_metrics,
        }
        if event_ids is not None:
            body["event_ids"] = [str(event_id) for event_id in event_ids]
        if time_range is not None:
            body["time_range"] = _time_range_body(time_range)
        answer = self._api("POST", "/v1/events/delete", body)
        deletion_id: str = answer["deletion_id"]
        if not wait:
            return deletion_id
        return self.wait_for_deletion(deletion_id, timeout_s=timeout_s)

    def deletion_status(self, deletion_id: str) -> dict[str, Any]:
        """``status`` (running, done, waiting_for_daily_cap), ``deleted``, partitions done."""
        return self._api("GET", f"/v1/deletions/{urllib.parse.quote(deletion_id)}")

    def wait_for_deletion(
        self,
        deletion_id: str,
        timeout_s: float = 600.0,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the status until the deletion is done (or waits for the daily cap)."""
        deadline = time.monotonic() + timeout_s
        interval = 0.05
        while True:
            status = self.deletion_status(deletion_id)
            if on_progress is not None:
                on_progress(status)
            if status["status"] != "running":
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"deletion {deletion_id} still running after {timeout_s:.0f}s "
                    f"({status['deleted']} deleted); `driftline deletion {deletion_id}` follows it"
                )
            time.sleep(interval)
            interval = min(1.0, interval * 1.5)

    def get_events_slice(
        self,
        project_id: str,
        model_id: str,
        start: int | str | None = None,
        end: int | str | None = None,
        event_ids: Iterable[str] | None = None,
        page_size: int = 1000,
    ) -> list[dict[str, Any]]:
        """Every stored event of a time range (any time form the API takes) and/or of some
        ids, as rows with ``__event_id`` and ``__event_timestamp``, through the API.

        Ids go in the body of ``POST /v1/events/lookup`` (a request line holds ~500 of
        them), 10,000 a request as the API takes them; a range alone pages ``GET /v1/events``.
        """
        bounds: dict[str, str] = {}
        if start is not None or end is not None:
            bounds = {"start_time": str(start), "end_time": str(end)}
        if event_ids is None:
            query = {"project_id": project_id, "model_id": model_id, "limit": str(page_size)}
            return self._pages(lambda cursor: self._api(
                "GET", "/v1/events?" + urllib.parse.urlencode(
                    {**query, **bounds, **({"cursor": cursor} if cursor else {})}
                ),
            ))  # fmt: skip
        ids = [str(event_id) for event_id in event_ids]
        rows: list[dict[str, Any]] = []
        for first in range(0, len(ids), MAX_LOOKUP_IDS):
            body: dict[str, Any] = {
                "project_id": project_id, "model_id": model_id, **bounds,
                "event_ids": ids[first : first + MAX_LOOKUP_IDS], "limit": page_size,
            }  # fmt: skip
            rows += self._pages(partial(self._lookup_page, body))
        return rows

    def _lookup_page(self, body: dict[str, Any], cursor: str | None) -> dict[str, Any]:
        return self._api("POST", "/v1/events/lookup", {**body, "cursor": cursor})

    @staticmethod
    def _pages(
        read_page: Callable[[str | None], dict[str, Any]],
        items: str = "rows",
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The ``items`` of every page (the first ``limit``), following ``next_cursor``."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while limit is None or len(found) < limit:
            page = read_page(cursor)
            found.extend(page[items])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        return found if limit is None else found[:limit]

    def flush(self) -> None:
        self._producer.flush()

    # --- reading back ---------------------------------------------------------------

    def get_event(self, project_id: str, model_id: str, event_id: str) -> dict[str, Any] | None:
        """The stored event (``event_id``, ``event_timestamp``, ``event``) through the API,
        or None if there is none. Raises ``ApiError`` for any other refusal."""
        path = f"/v1/events/{_segment(project_id)}/{_segment(model_id)}/{_segment(event_id)}"
        try:
            return self._api("GET", path)
        except ApiError as error:
            if error.status == 404 and "no event" in error.message:
                return None
            raise

    def get_metrics(
        self,
        project_id: str,
        model_id: str,
        start: int | str,
        end: int | str,
        bin: str = "hour",
    ) -> list[dict[str, Any]]:
        """The model's bins whose start lies in [start, end) (UTC ms or ISO-8601 with a
        zone), oldest first, through the API. ``bin``: hour, day (00:00 UTC) or week
        (Monday 00:00 UTC); a day or week bin sums its hours' counts, whole."""
        query = {"project_id": project_id, "model_id": model_id, "start": start, "end": end,
                 "bin": bin}  # fmt: skip
        answer = self._api("GET", "/v1/metrics?" + urllib.parse.urlencode(query))
        bins: list[dict[str, Any]] = answer["bins"]
        return bins

    def get_counters(self, project_id: str, model_id: str) -> dict[str, Any]:
        """The model's counters over every partition: ``dead_letters``, ``dropped_fields``
        (by column), ``forwarded`` and ``parked_updates`` (updates waiting for an insert)."""
        return self._api("GET", f"/v1/models/{_segment(project_id)}/{_segment(model_id)}/counters")

    def get_dead_letters(
        self, project_id: str | None = None, model_id: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The model's dead letters, oldest first, with their reasons (every page, or the
        first ``limit``); bytes as text when UTF-8, else base64 (see ``value_encoding``).
        No model: every letter, those that name none too (a token for all projects)."""
        path = "/v1/dead-letters"
        if project_id is not None or model_id is not None:
            path = f"/v1/models/{_segment(str(project_id))}/{_segment(str(model_id))}/dead-letters"
        page_size = str(min(1000, limit or 1000))

        def read_page(cursor: str | None) -> dict[str, Any]:
            query = {"limit": page_size, **({"cursor": cursor} if cursor else {})}
            return self._api("GET", f"{path}?{urllib.parse.urlencode(query)}")

        return self._pages(read_page, "dead_letters", limit)

    def status(self, project_id: str | None = None, model_id: str | None = None) -> dict[str, Any]:
        """The pipeline's progress: each stage's lag, and ``final`` (every message sent
        before the call has been applied to the bins)."""
        named = {"project_id": project_id, "model_id": model_id}
        query = {k: v for k, v in named.items() if v is not None}
        return self._api(
            "GET", "/v1/status" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        )

    def wait_until_final(self, timeout_s: float = 120.0, **model: str) -> dict[str, Any]:
        """Poll ``status`` until the bins are final; ``TimeoutError`` past ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        interval = 0.1
        while True:
            found = self.status(**model)
            if found["final"]:
                return found
            if time.monotonic() > deadline:
                lags = ", ".join(f"{s['stage']} {s['lag']}" for s in found["stages"])
                raise TimeoutError(f"the bins are not final after {timeout_s:.0f}s (lag: {lags})")
            time.sleep(interval)
            interval = min(1.0, interval * 1.5)

    # --- alert rules ----------------------------------------------------------------

    def create_alert_rule(self, rule: Mapping[str, Any]) -> dict[str, Any]:
        """Create an alert rule (the JSON shape of ``state.alert_rules``) through the API;
        the stored rule comes back, its channel secrets shown as ``***``. The identical
        rule again is accepted; a different one under the same id raises ``ApiError``
        (409: replace it with ``replace_alert_rule``)."""
        return self._api("POST", "/v1/alert-rules", dict(rule))

    def replace_alert_rule(self, rule: Mapping[str, Any]) -> dict[str, Any]:
        """Replace the existing rule that ``rule`` names (its project_id, model_id and
        rule_id) with ``rule``, secrets included."""
        names = (rule.get("project_id"), rule.get("model_id"), rule.get("rule_id"))
        path = "/v1/alert-rules/" + "/".join(_segment(str(name)) for name in names)
        return self._api("PUT", path, dict(rule))

    def get_alert_rules(self, project_id: str, model_id: str) -> list[dict[str, Any]]:
        """The model's alert rules, by rule id, their channel secrets shown as ``***``."""
        query = urllib.parse.urlencode({"project_id": project_id, "model_id": model_id})
        rules: list[dict[str, Any]] = self._api("GET", f"/v1/alert-rules?{query}")["rules"]
        return rules

    def delete_alert_rule(self, project_id: str, model_id: str, rule_id: str) -> None:
        """Delete the rule; ``ApiError`` (404) if the model has no such rule."""
        names = (project_id, model_id, rule_id)
        self._api("DELETE", "/v1/alert-rules/" + "/".join(_segment(name) for name in names))

    # --- alerts ---------------------------------------------------------------------

    def get_alerts(
        self,
        project_id: str,
        model_id: str,
        state: str = "all",
        rule_id: str | None = None,
        bin: str | None = None,
        start: int | str | None = None,
        end: int | str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The model's alerts, newest bin first, then by rule and column (every page, or the
        first ``limit``), each with its value, threshold, bin, rule and history of changes.

        ``state``: open, resolved or all; ``rule_id`` and ``bin`` (hour, day or week) keep
        one rule's or one bin size's; ``start``/``end`` (any time form the API takes) keep
        the alerts whose bin starts in ``[start, end)``.
        """
        filters = {"rule_id": rule_id, "bin": bin, "start": start, "end": end}
        query = {
            "project_id": project_id, "model_id": model_id, "state": state,
            "limit": str(min(1000, limit or 1000)),
            **{name: str(value) for name, value in filters.items() if value is not None},
        }  # fmt: skip

        def read_page(cursor: str | None) -> dict[str, Any]:
            page = {**query, **({"cursor": cursor} if cursor else {})}
            return self._api("GET", f"/v1/alerts?{urllib.parse.urlencode(page)}")

        return self._pages(read_page, "alerts", limit)

    def close(self) -> None:
        self._producer.flush()
        if self._registry is not None:
            self._registry.close()

    def __enter__(self) -> Driftline:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------

    def _api(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """One call to the REST API; its refusals become ``ApiError`` with its message."""
        url = f"{self.settings.api_base_url}{path}"
        headers = {"Accept": "application/json"}
        if self.settings.api_token:
            headers["Authorization"] = f"Bearer {self.settings.api_token}"
        data = None
        if body is not None:
            data = exact_json.dumps(body)
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                # A 204 (a deletion) has no body.
                answer: dict[str, Any] = exact_json.loads(raw) if raw else {}
                return answer
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                message = exact_json.loads(raw)["error"]
            except (exact_json.JSONError, KeyError, TypeError):
                message = raw[:300].decode(errors="replace") or str(error.reason)
            raise ApiError(error.code, message, dict(error.headers)) from None
        except (OSError, http.client.HTTPException) as error:
            # URLError, a refused or reset connection, a timeout, a cut-off answer.
            reason = getattr(error, "reason", error) or type(error).__name__
            raise ApiError(
                0,
                f"cannot reach the Driftline API at {self.settings.api_base_url} ({reason}); "
                "start it with `driftline api` or set DRIFTLINE_API_URL",
                {},
            ) from None

    def _models(self) -> ModelRegistry:
        if self._registry is None:
            self.create_topics()
            self._registry = ModelRegistry(self.settings.bootstrap_servers, self.topics.models.name)
        return self._registry

    def _send(
        self, spec: ModelSpec, outgoing: OutgoingEvent, update: bool, warn: bool = True
    ) -> EventId:
        op = "update" if update else "insert"
        value = encode_ingest(
            op,
            spec.project_id,
            spec.model_id,
            outgoing.event_id,
            outgoing.columns,
            outgoing.timestamp_ms,
        )
        key = ingest_key(spec.project_id, spec.model_id, outgoing.event_id)
        self._producer.produce(self.topics.ingest.name, key, value)
        published = EventId(outgoing.event_id)
        dropped = dropped_update_fields if update else dropped_insert_fields
        published.dropped_fields = tuple(dropped(spec, outgoing.columns))
        if warn and published.dropped_fields:
            _warn_dropped(published.dropped_fields, update)
        return published


def _segment(value: str) -> str:
    """One path segment, '/' included (event ids may hold it)."""
    return urllib.parse.quote(str(value), safe="")


def _time_range_body(time_range: TimeRange) -> dict[str, str]:
    if isinstance(time_range, Mapping):
        start, end = time_range.get("start_time"), time_range.get("end_time")
    else:
        start, end = time_range
    return {"start_time": _hour_text(start), "end_time": _hour_text(end)}


def _hour_text(value: Any) -> Any:
    """An aware datetime as ISO 8601 in UTC (with ms, so that an unaligned one reaches the
    API's alignment check as it is); anything else (ms, text) is for the API to judge."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidEventError(
                f"time_range: {value} has no time zone; give a UTC time on the hour"
            )
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


def _warn_dropped(fields: Iterable[str], update: bool) -> None:
    why = "only targets and metadata can be updated" if update else "the spec has no such column"
    warnings.warn(
        f"{why}; dropped: {', '.join(fields)}",
        DroppedFieldsWarning,
        stacklevel=3,
    )
