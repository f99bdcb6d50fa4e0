"""Stage 2 of the metric bins: sum the partitions' shares, compute metrics, re-emit.

Input: partial snapshots keyed ``model/hour`` (see ``agents/partials.py``). For each bin
the agent keeps the newest snapshot of every ingest partition (an older or repeated one
changes nothing) and marks the bin dirty. On its tick it emits each dirty bin whole -
counts, metrics and a version - to the compacted metrics topic, at most once per
``DRIFTLINE_EMIT_INTERVAL_S`` per bin, so a burst of changes gives few emissions. A bin
that changes past its window is emitted by the batch that changed it, without waiting for
the tick. A bin whose shares are all empty is emitted as a tombstone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Message

from driftline.agents.runtime import Outgoing
from driftline.state import exact_json
from driftline.state.bins import HOUR_MS, Counters, add_into
from driftline.state.metrics import bin_metrics
from driftline.state.registered import RegisteredModel
from driftline.state.store import PartitionStore, Write, table_write
from driftline.state.tables import PartitionTransaction
from driftline.topics.clients import DEAD_LETTER_MAX_BYTES
from driftline.topics.dead_letters import DeadLetter

SHARES = "shares"  # model/hour/partition -> {"v": version, "c": counters}
DIRTY = "dirty"  # model/hour -> b""


class BinsHandler:
    def __init__(
        self,
        model_of: Callable[[str], RegisteredModel | None],
        metrics_topic: str,
        emit_interval_s: float,
        dead_letter_topic: str,
    ) -> None:
        self._model_of = model_of
        self._metrics_topic = metrics_topic
        self._dead_letter_topic = dead_letter_topic
        self._emit_interval_ms = int(emit_interval_s * 1000)
        self._last_emitted: dict[bytes, int] = {}

    def handle(
        self, partition: int, messages: Sequence[Message], tx: PartitionTransaction, now_ms: int
    ) -> list[Outgoing]:
        store = tx.store
        newest: dict[bytes, tuple[int, bytes]] = {}
        for message in messages:
            bin_key, value = message.key(), message.value()
            if bin_key is None or value is None:
                continue
            snapshot = exact_json.loads_tagged(value)
            share_key = bin_key + b"/" + str(snapshot["p"]).encode()
            if share_key not in newest or newest[share_key][0] < snapshot["v"]:
                newest[share_key] = (snapshot["v"], value)
        writes: list[Write] = []
        fresh: dict[bytes, dict[bytes, bytes]] = {}  # bin key -> its shares written now
        for share_key, (version, value) in newest.items():
            current = store.get(SHARES, share_key)
            if current is not None and exact_json.loads_tagged(current)["v"] >= version:
                continue  # redelivered or older than what we have
            writes.append(table_write(SHARES, share_key, value))
            fresh.setdefault(share_key.rsplit(b"/", 1)[0], {})[share_key] = value
        outgoing = self._emit_due(fresh, store, writes, now_ms)
        tx.add_writes(writes)
        return outgoing

    def _emit_due(
        self,
        fresh: dict[bytes, dict[bytes, bytes]],
        store: PartitionStore,
        writes: list[Write],
        now_ms: int,
    ) -> list[Outgoing]:
        """Emit at once the changed bins whose coalescing window is over; mark the rest dirty.

        Leaving every changed bin to the next tick made a label wait up to a tick interval
        (0.1 s) more on its way to Redis, even in a bin that had not changed for seconds.
        """
        outgoing: list[Outgoing] = []
        for bin_key, shares in fresh.items():
            if now_ms - self._last_emitted.get(bin_key, 0) < self._emit_interval_ms:
                writes.append(table_write(DIRTY, bin_key, b""))
                continue
            value = self._bin_value(bin_key, store, shares)
            outgoing.append(Outgoing(self._metrics_topic, bin_key, value))
            writes.append(table_write(DIRTY, bin_key, None))
            self._last_emitted[bin_key] = now_ms
        return outgoing

    def dead_letter(
        self, partition: int, message: Message, reason: str, tx: PartitionTransaction
    ) -> list[Outgoing]:
        letter = DeadLetter.of(message, reason).fitted(DEAD_LETTER_MAX_BYTES)
        return [Outgoing(self._dead_letter_topic, letter.key, letter.value, letter.headers())]

    def tick(self, partition: int, tx: PartitionTransaction, now_ms: int) -> list[Outgoing]:
        store = tx.store
        self._forget_emissions_before(now_ms - self._emit_interval_ms)
        writes: list[Write] = []
        outgoing: list[Outgoing] = []
        for bin_key, _ in list(store.items(DIRTY)):
            if now_ms - self._last_emitted.get(bin_key, 0) < self._emit_interval_ms:
                continue
            outgoing.append(Outgoing(self._metrics_topic, bin_key, self._bin_value(bin_key, store)))
            writes.append(table_write(DIRTY, bin_key, None))
            self._last_emitted[bin_key] = now_ms
        tx.add_writes(writes)
        return outgoing

    def _forget_emissions_before(self, cutoff_ms: int) -> None:
        """Past the coalescing window an emission time no longer matters; keep the map small."""
        if len(self._last_emitted) > 1000:
            self._last_emitted = {k: t for k, t in self._last_emitted.items() if t >= cutoff_ms}

    def _bin_value(
        self, bin_key: bytes, store: PartitionStore, fresh: dict[bytes, bytes] | None = None
    ) -> bytes | None:
        """The bin summed from its shares in the store, or in ``fresh`` (share key -> value)
        for those the current batch writes."""
        shares = dict(store.items(SHARES, bin_key + b"/"))
        shares.update(fresh or {})
        counters: Counters = {}
        version = 0
        for raw in shares.values():
            share = exact_json.loads_tagged(raw)
            version += share["v"]
            if share["c"]:
                add_into(counters, share["c"])
        if not counters:
            return None
        model, hour = bin_key.decode().rsplit("/", 1)
        registered = self._model_of(model)
        return exact_json.dumps(emitted_bin(registered, model, int(hour), version, counters))


def emitted_bin(
    registered: RegisteredModel | None, model: str, hour: int, version: int, counters: Counters
) -> dict[str, Any]:
    """The whole bin as the metrics topic and Redis carry it."""
    project_id, model_id = model.split("/", 1)
    value: dict[str, Any] = {
        "project_id": project_id,
        "model_id": model_id,
        "hour_start_ms": hour * HOUR_MS,
        "hour_end_ms": (hour + 1) * HOUR_MS,
        "version": version,
        "emitted_at_ms": int(time.time() * 1000),
        "counts": counters,
    }
    if registered is not None:
        value["metrics"] = bin_metrics(registered.spec, registered.baseline, counters)
    return value
