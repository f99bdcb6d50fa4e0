"""The bins stage's component-test helpers: a model, its events, and stage 1
(``BinShares``) run on an ingest partition's real store."""

from __future__ import annotations

from dataclasses import dataclass

from driftline.agents.bin_shares import BinShares
from driftline.agents.runtime import Outgoing
from driftline.state.bins import HOUR_MS, BinKey, Counters
from driftline.state.events import EventChange, StoredEvent
from driftline.state.models import ColumnType, ModelSpec, Task
from driftline.state.partition_tables import PARTIALS
from driftline.state.store import PartitionStore
from driftline.state.tables import PartitionTransaction

MODEL = "shop/churn"
HOUR = 490_000
SPEC = ModelSpec(
    project_id="shop",
    model_id="churn",
    inputs=("age", "city"),
    outputs=("score",),
    targets=("label",),
    task=Task.BINARY_CLASSIFICATION,
    column_types={"age": ColumnType.INT, "city": ColumnType.CATEGORY, "score": ColumnType.FLOAT},
)


def event(number: int, hour: int = HOUR, label: int | None = None) -> StoredEvent:
    """An event of ``MODEL`` in ``hour``; its values vary with ``number``."""
    columns = {"age": 18 + number % 60, "city": ["paris", "lyon", "rome"][number % 3],
               "score": (number % 10) / 10, "label": label}  # fmt: skip
    timestamp = hour * HOUR_MS + number * 1000
    return StoredEvent(f"e{number}", timestamp, columns, timestamp + 500, number)


def inserted(*events: StoredEvent) -> list[EventChange]:
    return [EventChange(MODEL, None, e) for e in events]


@dataclass
class IngestPartition:
    """Stage 1 on one ingest partition, called batch by batch as the merge processor does:
    one transaction per batch, committed to the partition's store."""

    number: int
    shares: BinShares
    store: PartitionStore
    next_offset: int = 0

    def batch(self, changes: list[EventChange], messages: int = 10) -> list[Outgoing]:
        """The snapshots of a batch of ``messages`` input messages that made ``changes``."""
        self.next_offset += messages
        tx = PartitionTransaction(self.store)
        snapshots = self.shares.apply(self.number, self.next_offset, changes, tx)
        self.store.write(tx.writes(), self.store.checkpoint().following(self.next_offset))
        return snapshots

    def stored_shares(self) -> dict[BinKey, Counters]:
        return dict(PartitionTransaction(self.store).items(PARTIALS))
