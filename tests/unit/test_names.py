"""Model names (state/names.py): the one rule the spec, the wire format, the REST API, the
tokens and the CLI check a project_id or model_id against, in the same words."""

from __future__ import annotations

import pytest

from driftline.state.names import model_key, name_problem, split_model_key


@pytest.mark.parametrize("name", ["shop", "a b", "ünï", "x" * 1000, "a.b-c_d"])
def test_any_non_empty_text_without_a_slash_is_a_name(name: str) -> None:
    assert name_problem(name, "model_id") is None
    assert split_model_key(model_key(name, "m")) == (name, "m")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "'model_id' must be a non-empty string without '/'; it is missing"),
        ("", "'model_id' must be a non-empty string without '/'; got \"\""),
        ("a/b", "'model_id' must be a non-empty string without '/'; got \"a/b\""),
        (5, "'model_id' must be a non-empty string without '/'; got 5"),
        (["x"], "'model_id' must be a non-empty string without '/'; got [\"x\"]"),
    ],
)
def test_anything_else_is_refused_saying_what_a_name_is(value: object, problem: str) -> None:
    assert name_problem(value, "model_id") == problem
