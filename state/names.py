"""Model names: a ``project_id`` and a ``model_id``, joined into the model's key.

Each is a non-empty string without '/'. The '/' is what joins them, ``project_id/model_id``,
and what joins a model to an event, ``project_id/model_id/event_id``: such a key splits at
its first two '/' (SPEC §4), so an event id may hold '/' and a name may not. The spec, the
wire format, the REST API, the tokens' projects and the CLI check a name here, so that
they accept the same names and refuse the others in the same words.
"""

from __future__ import annotations

from driftline.state.wording import shown


def name_problem(value: object, field: str) -> str | None:
    """Why ``value`` cannot be a model's ``field`` (``project_id``, ``model_id``), or None."""
    if isinstance(value, str) and value and "/" not in value:
        return None
    got = "it is missing" if value is None else f"got {shown(value)}"
    return f"'{field}' must be a non-empty string without '/'; {got}"


def model_key(project_id: str, model_id: str) -> str:
    """The model's key: its topics' message keys and its tables' key prefix."""
    return f"{project_id}/{model_id}"


def split_model_key(key: str) -> tuple[str, str]:
    """The ``(project_id, model_id)`` a ``model_key`` joined (a project_id holds no '/')."""
    project_id, _, model_id = key.partition("/")
    return project_id, model_id
