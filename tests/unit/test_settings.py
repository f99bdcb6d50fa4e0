import dataclasses
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from driftline.settings import ENV, Settings


def other_value(setting_field: dataclasses.Field[Any], default: Any) -> object:
    """A value of the field's type that differs from its default."""
    kind = get_type_hints(Settings)[setting_field.name]
    if kind is bool:
        return not default
    if kind is int:
        return default + 7
    if kind is float:
        return default + 1.5
    if kind is Path:
        return Path("/elsewhere") / setting_field.name
    return f"not-the-default-{setting_field.name}"


def everything_changed() -> Settings:
    defaults = Settings()
    return dataclasses.replace(
        defaults,
        **{
            setting_field.name: other_value(setting_field, getattr(defaults, setting_field.name))
            for setting_field in dataclasses.fields(Settings)
        },
    )


def test_to_env_round_trips_every_field() -> None:
    settings = everything_changed()
    for setting_field in dataclasses.fields(Settings):
        assert getattr(settings, setting_field.name) != getattr(Settings(), setting_field.name)
    env = settings.to_env()
    assert Settings.from_env(env) == settings
    assert "DRIFTLINE_API_TOKEN" in env  # only to pass it to a child process
    # The name the product documents.
    assert env["EVENT_DELETION_BATCH_SIZE"] == str(settings.event_deletion_batch_size)


@pytest.mark.parametrize(
    "name", [setting_field.name for setting_field in dataclasses.fields(Settings)]
)
def test_each_field_has_its_own_variable(name: str) -> None:
    """A field whose variable were dropped from ``to_env`` (or read under another name)
    would come back as its default: a child worker silently running on defaults."""
    changed = dataclasses.replace(Settings(), **{name: getattr(everything_changed(), name)})
    assert Settings.from_env(changed.to_env()) == changed


def test_variable_names_are_distinct() -> None:
    names = [setting_field.metadata[ENV] for setting_field in dataclasses.fields(Settings)]
    assert len(set(names)) == len(names)


def test_paths_in_the_home_follow_it() -> None:
    settings = Settings.from_env({"DRIFTLINE_HOME": "/h"})
    assert settings.data_dir == Path("/h/worker-data")
    assert settings.api_tokens_file == Path("/h/api-tokens.json")


def test_an_empty_variable_leaves_numbers_and_optional_texts_unset() -> None:
    settings = Settings.from_env({"DRIFTLINE_INGEST_PARTITIONS": "", "REDIS_URL": ""})
    assert (settings.ingest_partitions, settings.redis_url) == (8, None)


def test_defaults_describe_the_embedded_stack() -> None:
    settings = Settings.from_env({})
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert settings.redis == "redis://127.0.0.1:16379/0"


def test_a_malformed_number_names_the_variable() -> None:
    with pytest.raises(ValueError, match="DRIFTLINE_INGEST_PARTITIONS must be an integer"):
        Settings.from_env({"DRIFTLINE_INGEST_PARTITIONS": "eight"})


@pytest.mark.parametrize(
    ("raw", "expected"), [("off", False), ("0", False), ("True", True), ("", True)]
)
def test_a_switch_reads_on_and_off_words(raw: str, expected: bool) -> None:
    settings = Settings.from_env({"DRIFTLINE_POSTGRES_PROJECTION": raw})
    assert settings.postgres_projection is expected


def test_a_malformed_switch_names_the_variable() -> None:
    with pytest.raises(ValueError, match="DRIFTLINE_POSTGRES_PROJECTION must be on or off"):
        Settings.from_env({"DRIFTLINE_POSTGRES_PROJECTION": "maybe"})
