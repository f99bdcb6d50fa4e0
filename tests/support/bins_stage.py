"""The bins stage in-process, for its component tests: the churn model's events, and stage 1
(``BinShares``) run on an ingest partition's real store."""

from __future__ import annotations

from dataclasses import dataclass

from driftline.agents.bin_shares import BinShares
from driftline.agents.runtime import Outgoing
from driftline.state.baseline import profile_baseline
from driftline.state.bins import HOUR_MS, BinKey, Counters
from driftline.state.events import EventChange, StoredEvent
from driftline.state.partition_tables import PARTIALS
from driftline.state.registered import RegisteredModel
from driftline.state.spec import ModelSpec
from driftline.state.store import PartitionStore
from driftline.state.tables import PartitionTransaction
from tests.support.models import CHURN_BASELINE, CHURN_SPEC, HOUR0

MODEL = "shop/churn"
HOUR = HOUR0 // HOUR_MS


def churn_model() -> RegisteredModel:
    """The churn model as a worker's registry holds it, with its baseline."""
    spec = ModelSpec.from_dict(CHURN_SPEC)
    return RegisteredModel(spec, profile_baseline(spec, CHURN_BASELINE))


def event(number: int, hour: int = HOUR, label: int | None = None) -> StoredEvent:
    """An event of ``MODEL`` in ``hour``; its values vary with ``number``."""
    columns = {"age": 18 + number % 60, "plan": ["free", "pro", "team"][number % 3],
               "score": (number % 10) / 10, "churned": label}  # fmt: skip
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
        snapshots = self.shares.apply(self.number, self.next_offset, changes, tx, {})
        self.store.write(tx.writes(), self.store.checkpoint().following(self.next_offset))
        return snapshots

    def stored_shares(self) -> dict[BinKey, Counters]:
        return {
            key: share.counters for key, share in PartitionTransaction(self.store).items(PARTIALS)
        }
