"""Fixtures of the bins stage's component tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from driftline.agents.bin_shares import BinShares
from driftline.state.registered import RegisteredModel
from driftline.state.store import PartitionStore
from tests.support.bins_stage import MODEL, IngestPartition, churn_model


@pytest.fixture(scope="session")
def registered() -> RegisteredModel:
    return churn_model()


@pytest.fixture
def ingest_partition(
    registered: RegisteredModel, tmp_path: Path
) -> Iterator[Callable[[int], IngestPartition]]:
    """Makes ingest partition ``n`` (one store each), closing the stores afterwards."""
    made: list[IngestPartition] = []

    def make(number: int) -> IngestPartition:
        shares = BinShares({MODEL: registered}.get, "bin-partials")
        made.append(IngestPartition(number, shares, PartitionStore(tmp_path / f"ingest-{number}")))
        return made[-1]

    yield make
    for partition in made:
        partition.store.close()
