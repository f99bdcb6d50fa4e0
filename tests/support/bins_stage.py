"""The bins stage in-process, for its component tests: the churn model's events, stage 1
(``BinShares``) run on an ingest partition's real store, and what one partition sent,
summed the plain way (``SentShares``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from driftline.agents.bin_shares import BinShares
from driftline.agents.runtime import Outgoing
from driftline.state.baseline import profile_baseline
from driftline.state.bins import BIN_KEY, HOUR_MS, BinKey, Counters, add_into
from driftline.state.events import EventChange, StoredEvent
from driftline.state.registered import RegisteredModel
from driftline.state.spec import ModelSpec
from driftline.state.store import PartitionStore
from driftline.state.tables import PartitionTransaction
from driftline.topics.bin_partials import BIN_PARTIAL
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


class SentShares:
    """One ingest partition's share of each bin, from the bin-partials records it sent:
    a delta adds to the share, a snapshot replaces it; bins that sum to nothing left out."""

    def __init__(self) -> None:
        self._shares: dict[BinKey, Counters] = {}

    def add(self, outgoing: list[Outgoing], topic: str = "bin-partials") -> None:
        for out in outgoing:
            if out.topic != topic:
                continue
            assert out.key is not None
            assert out.value is not None
            key, record = BIN_KEY.decode(out.key), BIN_PARTIAL.decode(out.value)
            if record.delta:
                add_into(self._shares.setdefault(key, {}), record.share.counters)
            else:
                self._shares[key] = dict(record.share.counters)

    def shares(self) -> dict[BinKey, Counters]:
        return {key: counters for key, counters in self._shares.items() if counters}


@dataclass
class IngestPartition:
    """Stage 1 on one ingest partition, called batch by batch as the merge processor does:
    one transaction per batch, committed to the partition's store."""

    number: int
    shares: BinShares
    store: PartitionStore
    next_offset: int = 0
    sent: SentShares = field(default_factory=SentShares)

    def batch(self, changes: list[EventChange], messages: int = 10) -> list[Outgoing]:
        """The records of a batch of ``messages`` input messages that made ``changes``."""
        self.next_offset += messages
        tx = PartitionTransaction(self.store)
        records = self.shares.apply(self.number, self.next_offset, changes, tx, {})
        self.store.write(tx.writes(), self.store.checkpoint().following(self.next_offset))
        self.sent.add(records)
        return records

    def sent_shares(self) -> dict[BinKey, Counters]:
        """The partition's share of each bin, summed from what it sent."""
        return self.sent.shares()
