"""Stage 1 of the metric bins: each ingest partition's share of every hour bin.

The shares live in the same partition store as the events that feed them and are written
in the same atomic batch, so a bin share always equals the contributions of the
partition's current events, whatever crashes and redeliveries happened. Each changed
share is then sent whole, as a snapshot versioned by the batch's input offset, to the
bin-partials topic; the bins agent keeps the newest snapshot per partition and sums them.
A snapshot, unlike a delta, can be applied twice.
"""

from __future__ import annotations

from collections.abc import Callable

from driftline.agents.runtime import Outgoing
from driftline.state import exact_json
from driftline.state.bins import (
    BinKey,
    ContributionRules,
    Counters,
    add_into,
    batch_deltas,
)
from driftline.state.events import EventChange
from driftline.state.registered import RegisteredModel
from driftline.state.store import PartitionStore, Write, table_write

PARTIALS = "partials"


def bin_key(key: BinKey) -> bytes:
    model, hour = key
    return f"{model}/{hour}".encode()


class PartialBins:
    def __init__(self, model_of: Callable[[str], RegisteredModel | None], topic: str) -> None:
        self._model_of = model_of
        self._topic = topic
        self._rules: dict[str, tuple[RegisteredModel, ContributionRules]] = {}

    def apply(
        self, partition: int, version: int, changes: list[EventChange], store: PartitionStore
    ) -> tuple[list[Write], list[Outgoing]]:
        deltas = self.deltas(changes)
        changed = list(deltas)
        if not changed:
            return [], []
        raw_keys = [bin_key(key) for key in changed]
        writes: list[Write] = []
        outgoing: list[Outgoing] = []
        for key, raw_key, current in zip(
            changed, raw_keys, store.get_many(PARTIALS, raw_keys), strict=True
        ):
            share: Counters = {} if current is None else exact_json.loads_tagged(current)
            add_into(share, deltas[key])
            value = exact_json.dumps_tagged(share) if share else None
            writes.append(table_write(PARTIALS, raw_key, value))
            snapshot = {"p": partition, "v": version, "c": share or None}
            outgoing.append(Outgoing(self._topic, raw_key, exact_json.dumps_tagged(snapshot)))
        return writes, outgoing

    def deltas(self, changes: list[EventChange]) -> dict[BinKey, Counters]:
        """The batch's non-empty bin deltas, each model's changes counted together."""
        by_model: dict[str, list[EventChange]] = {}
        for change in changes:
            by_model.setdefault(change.model_key, []).append(change)
        deltas: dict[BinKey, Counters] = {}
        for model, model_changes in by_model.items():
            rules = self.rules(model)
            if rules is not None:
                deltas.update(batch_deltas(rules, model, model_changes))
        return deltas

    def rules(self, model: str) -> ContributionRules | None:
        """The model's contribution rules, rebuilt when its registration changes."""
        registered = self._model_of(model)
        if registered is None:
            return None
        cached = self._rules.get(model)
        if cached is None or cached[0] is not registered:
            cached = (registered, ContributionRules(registered.spec, registered.baseline))
            self._rules[model] = cached
        return cached[1]
