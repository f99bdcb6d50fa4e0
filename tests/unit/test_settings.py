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
    )
    assert Settings.from_env(settings.to_env()) == settings


def test_defaults_describe_the_embedded_stack() -> None:
    settings = Settings.from_env({})
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert settings.redis == "redis://127.0.0.1:16379/0"


def test_a_malformed_number_names_the_variable() -> None:
    with pytest.raises(ValueError, match="DRIFTLINE_INGEST_PARTITIONS must be an integer"):
        Settings.from_env({"DRIFTLINE_INGEST_PARTITIONS": "eight"})
