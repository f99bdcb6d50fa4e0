"""Fixtures of the bins stage's component tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from driftline.agents.bin_shares import BinShares
from driftline.state.baseline import profile_baseline
from driftline.state.registered import RegisteredModel
from driftline.state.store import PartitionStore
from tests.component.bins_stage import MODEL, SPEC, IngestPartition


@pytest.fixture(scope="session")
def registered() -> RegisteredModel:
    rows = [
        {"age": 20 + i % 50, "city": ["paris", "lyon"][i % 2], "score": (i % 97) / 97}
        for i in range(200)
    ]
    return RegisteredModel(SPEC, profile_baseline(SPEC, rows))


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
