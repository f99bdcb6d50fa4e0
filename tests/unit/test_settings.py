from pathlib import Path

import pytest

from driftline.settings import Settings


def test_to_env_round_trips_every_field() -> None:
    settings = Settings(
        kafka_bootstrap_servers="k:1",
        redis_url="redis://r:2/0",
        topic_prefix="t",
        ingest_partitions=3,
        worker_port=1234,
        parked_update_timeout_s=2.5,
        home=Path("/h"),
        data_dir=Path("/d"),
        store_write_buffer_mb=11,
        store_block_cache_mb=12,
        heap_trim_interval_s=1.5,
        malloc_arenas=3,
        worker_advertised_url="http://w:6066",
        internal_secret="shared",
        compaction_lag_ms=5,
        tombstone_retention_ms=6,
        event_deletion_batch_size=7,
        deletion_daily_cap=8,
        delete_requests_per_day=9,
        api_host="0.0.0.0",
        api_port=8181,
        api_tokens_file=Path("/t.json"),
        api_max_body_bytes=10,
        api_header_timeout_s=1.5,
        api_body_timeout_s=2.5,
        api_redis_timeout_s=0.5,
        api_url="http://api:8181",
        api_token="secret",
    )
    env = settings.to_env()
    assert Settings.from_env(env) == settings
    assert "DRIFTLINE_API_TOKEN" in env  # only to pass it to a child process
    assert env["EVENT_DELETION_BATCH_SIZE"] == "7"  # the name the product documents


def test_defaults_describe_the_embedded_stack() -> None:
    settings = Settings.from_env({})
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert settings.redis == "redis://127.0.0.1:16379/0"


def test_a_malformed_number_names_the_variable() -> None:
    with pytest.raises(ValueError, match="DRIFTLINE_INGEST_PARTITIONS must be an integer"):
        Settings.from_env({"DRIFTLINE_INGEST_PARTITIONS": "eight"})
