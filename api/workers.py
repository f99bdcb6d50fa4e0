"""Reads that only the workers can answer, routed to each partition's owner.

The owner keys in Redis (``topics.ownership``, kept alive by each worker's heartbeat) say
which worker holds a partition; a worker that no longer holds it answers 409 with the new
owner, and the read is retried there once. A partition with no reachable owner is
``WorkerUnavailableError`` (the API answers 503: the read can be retried once the group
has settled). Redis being down raises ``redis.RedisError`` (503 as well).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from driftline.state import exact_json
from driftline.state.names import split_model_key
from driftline.topics.internal_routes import HEADER
from driftline.topics.ownership import PartitionOwners

# A worker's HTTP server (aiohttp under Faust) refuses bodies over 1 MiB; a lookup of
# 10,000 long ids is sent in requests of at most this many bytes of ids.
LOOKUP_BODY_BYTES = 512 * 1024


class WorkerUnavailableError(Exception):
    pass


def batches_by_size(ids: list[str], max_bytes: int) -> list[list[str]]:
    """``ids`` in order, cut so that each batch's ids take at most ``max_bytes`` as a JSON
    list (an id longer than that alone is a batch of its own)."""
    batches: list[list[str]] = []
    batch: list[str] = []
    size = 2
    for event_id in ids:
        # Quotes and a comma; escapes make an id at most 6 times its UTF-8 length.
        cost = len(orjson.dumps(event_id)) + 1
        if batch and size + cost > max_bytes:
            batches.append(batch)
            batch, size = [], 2
        batch.append(event_id)
        size += cost
    if batch:
        batches.append(batch)
    return batches


class Workers:
    def __init__(
        self, owners: PartitionOwners, session: aiohttp.ClientSession, secret: str = ""
    ) -> None:
        self._owners = owners
        self._session = session
        # The workers answer only requests that carry it (``driftline.internal_secret``).
        self._headers = {HEADER: secret}

    async def owners_of(self, partitions: Iterable[int]) -> dict[int, str | None]:
        wanted = list(partitions)
        return await asyncio.to_thread(self._owners.owners_of, wanted)

    async def deletion_records(
        self, deletion_id: str, partitions: Iterable[int]
    ) -> dict[str, dict[str, Any]]:
        """What the owners of ``partitions`` know of a deletion, by partition (as text)."""
        owners = await self.owners_of(partitions)
        wanted = {str(p) for p in owners}
        # An owner that does not answer leaves its partitions not done, not failed.
        answers = await self._from_each(owners, f"/internal/deletions/{deletion_id}")
        records: dict[str, dict[str, Any]] = {}
        for body in answers.values():
            for partition, record in body.get("partitions", {}).items():
                if partition in wanted:
                    records[partition] = record
        return records

    async def event(self, partition: int, model: str, event_id: str) -> dict[str, Any] | None:
        """One stored event of ``partition`` (its owner's lookup), None when there is none."""
        found = await self.lookup(partition, model, [event_id])
        return next((event for event in found if event.get("event_id") == event_id), None)

    async def counters(self, model: str, partitions: int) -> dict[int, dict[str, Any]]:
        """A model's counters in each of the ``partitions``, each from its owner.

        Raises ``WorkerUnavailableError`` naming the partitions no owner answered for: a
        sum without them would be silently low.
        """
        owners = await self.owners_of(range(partitions))
        project_id, model_id = split_model_key(model)
        path = f"/internal/models/{quote(project_id, safe='')}/{quote(model_id, safe='')}/counters"
        answers = await self._from_each(owners, path)
        found: dict[int, dict[str, Any]] = {}
        for partition, owner in owners.items():
            answer = answers.get(owner) if owner is not None else None
            record = None if answer is None else answer.get("partitions", {}).get(str(partition))
            if isinstance(record, dict):
                found[partition] = record
        missing = sorted(set(owners) - set(found))
        if missing:
            raise WorkerUnavailableError(
                f"no worker answered for partition(s) {', '.join(map(str, missing))} (not "
                "assigned yet, or moving between workers); retry shortly"
            )
        return found

    async def progress(self, partitions: int) -> list[dict[str, Any]]:
        """What each worker that holds an ingest partition says of its bins partitions."""
        owners = await self.owners_of(range(partitions))
        return list((await self._from_each(owners, "/internal/progress")).values())

    async def _from_each(
        self, owners: dict[int, str | None], path: str
    ) -> dict[str, dict[str, Any]]:
        """``path`` asked of every distinct owner at once; the 200 answers by owner URL."""
        urls = sorted({url for url in owners.values() if url is not None})
        answers = await asyncio.gather(
            *(self._get(f"{url}{path}") for url in urls), return_exceptions=True
        )
        return {
            url: answer[1]
            for url, answer in zip(urls, answers, strict=True)
            if not isinstance(answer, BaseException) and answer[0] == 200
        }

    async def page(
        self, partition: int, model: str, start_ms: int, end_ms: int, after: str, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to ``limit`` events of one partition in [start, end) after the key ``after``."""
        query = {"model": model, "start": start_ms, "end": end_ms, "after": after, "limit": limit}
        body = await self._at_owner(partition, "GET", "/events", query=query)
        next_after: str | None = body.get("next")
        return list(body.get("events", [])), next_after

    async def lookup(
        self, partition: int, model: str, event_ids: list[str]
    ) -> list[dict[str, Any]]:
        """The events of ``event_ids`` the partition holds, in as many requests as the
        worker's body limit needs."""
        found: list[dict[str, Any]] = []
        for batch in batches_by_size(event_ids, LOOKUP_BODY_BYTES):
            payload = {"model": model, "event_ids": batch}
            body = await self._at_owner(partition, "POST", "/events/lookup", payload=payload)
            found.extend(body.get("events", []))
        return found

    async def _at_owner(
        self,
        partition: int,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        owner = (await self.owners_of([partition]))[partition]
        for _ in range(2):
            if owner is None:
                raise WorkerUnavailableError(
                    f"partition {partition} has no worker yet; retry shortly"
                )
            url = f"{owner}/internal/partitions/{partition}{path}"
            try:
                status, body = await self._request(method, url, query, payload)
            except (aiohttp.ClientError, TimeoutError) as error:
                raise WorkerUnavailableError(
                    f"the worker holding partition {partition} ({owner}) did not answer: "
                    f"{error or type(error).__name__}; retry shortly"
                ) from error
            if status == 200:
                return body
            if status != 409:
                raise WorkerUnavailableError(
                    f"the worker holding partition {partition} answered {status}: "
                    f"{body.get('error', body)}"
                )
            moved = body.get("owner")
            owner = moved if isinstance(moved, str) and moved != owner else None
        raise WorkerUnavailableError(
            f"partition {partition} is moving between workers; retry shortly"
        )

    async def _get(self, url: str) -> tuple[int, dict[str, Any]]:
        return await self._request("GET", url, None, None)

    async def _request(
        self,
        method: str,
        url: str,
        query: dict[str, Any] | None,
        payload: dict[str, Any] | None,
    ) -> tuple[int, dict[str, Any]]:
        params = None if query is None else {k: str(v) for k, v in query.items()}
        data = None if payload is None else orjson.dumps(payload)
        headers = dict(self._headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self._session.request(
            method, url, params=params, data=data, headers=headers
        ) as response:
            raw = await response.read()
        try:
            body = exact_json.loads(raw) if raw else {}
        except exact_json.JSONError:
            body = {"error": raw[:200].decode(errors="replace")}
        return response.status, body if isinstance(body, dict) else {"value": body}
