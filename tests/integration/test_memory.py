"""A worker's RocksDB stores, merge and bins alike, share one memory budget: what is
written beyond it goes to disk instead of growing the worker's memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from driftline.client import Driftline
from driftline.settings import Settings
from driftline.stack.worker import WorkerProcess
from driftline.state.store import MIB
from driftline.topics.catalog import Topics
from driftline.topics.messages import encode_ingest, ingest_key
from driftline.topics.producer import CheckedProducer
from tests.support.models import FRAUD_SPEC, T0
from tests.support.pipeline import wait_for_lag_zero, worker_get

pytestmark = pytest.mark.integration

EVENTS = 50_000


def test_a_worker_keeps_its_stores_within_one_memory_budget(
    settings: Settings, start_worker: Callable[..., WorkerProcess]
) -> None:
    budget = settings.with_overrides(store_write_buffer_mb=4, store_block_cache_mb=16)
    with Driftline(budget) as client:
        client.register_model(FRAUD_SPEC)
    producer = CheckedProducer(budget.bootstrap_servers)
    topic = Topics.for_settings(budget).ingest.name
    uri = "https://example.com/" + "x" * 300
    for i in range(EVENTS):
        columns: dict[str, Any] = {"age": i % 90, "score": 0.5, "uri": f"{uri}{i}"}
        value = encode_ingest("insert", "shop", "fraud", f"e{i}", columns, T0 + i)
        producer.produce(topic, ingest_key("shop", "fraud", f"e{i}"), value)
    producer.flush()
    worker = start_worker(budget)
    wait_for_lag_zero(budget)

    memory = worker_get(budget, f"{worker.url}/internal/memory")
    rocksdb = memory["rocksdb"]
    assert rocksdb["stores"] == budget.ingest_partitions + budget.bins_partitions
    assert rocksdb["caches"] == 1
    # ~20 MB of events were written; RocksDB's defaults would hold them all in memtables.
    # The budget is soft (a flush starts past 90% of it, each store keeps a memtable).
    assert rocksdb["size-all-mem-tables"] <= 2 * 4 * MIB
    tables = list((budget.data_dir / "merge").rglob("*.sst"))
    assert tables, "nothing was flushed to disk"
    assert memory["rss_bytes"] > 0
