"""The model spec: which columns an event has and what role each plays.

The roles decide the merge rules (only targets and metadata are updatable) and, later,
the metrics (inputs and outputs drift, targets feed performance). A spec is validated
once, when it is registered, so that the hot path can trust it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from driftline.state.names import model_key, name_problem
from driftline.state.wording import E, enum_member, shown


class InvalidSpecError(ValueError):
    """A model spec that cannot be registered; the message says what to change."""


class Task(StrEnum):
    BINARY_CLASSIFICATION = "binary_classification"
    MULTICLASS_CLASSIFICATION = "multiclass_classification"
    REGRESSION = "regression"


class ColumnType(StrEnum):
    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    CATEGORY = "category"
    STR = "str"


ROLES = ("inputs", "outputs", "targets", "decisions", "metadata")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    project_id: str
    model_id: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    targets: tuple[str, ...] = ()
    decisions: tuple[str, ...] = ()
    metadata: tuple[str, ...] = ()
    task: Task = Task.BINARY_CLASSIFICATION
    event_id_col: str = "event_id"
    event_ts_col: str = "timestamp"
    column_types: Mapping[str, ColumnType] = field(default_factory=dict)
    positive_class: Any = 1
    threshold: float = 0.5
    classes: tuple[Any, ...] = ()

    @property
    def key(self) -> str:
        return model_key(self.project_id, self.model_id)

    # Derived once: the merge rules consult them for every event.
    columns: frozenset[str] = field(init=False, compare=False, repr=False)
    # Ground truth and metadata arrive late; what the model saw and said does not change.
    updatable_columns: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        every = (*self.inputs, *self.outputs, *self.targets, *self.decisions, *self.metadata)
        object.__setattr__(self, "columns", frozenset(every))
        object.__setattr__(self, "updatable_columns", frozenset((*self.targets, *self.metadata)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "model_id": self.model_id,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "targets": list(self.targets),
            "decisions": list(self.decisions),
            "metadata": list(self.metadata),
            "task": self.task.value,
            "event_id_col": self.event_id_col,
            "event_ts_col": self.event_ts_col,
            "column_types": {name: kind.value for name, kind in self.column_types.items()},
            "positive_class": self.positive_class,
            "threshold": self.threshold,
            "classes": list(self.classes),
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ModelSpec:
        if not isinstance(raw, Mapping):
            raise InvalidSpecError("a model spec must be a mapping of field names to values")
        unknown = set(raw) - {f.name for f in fields(cls) if f.init}
        if unknown:
            raise InvalidSpecError(f"unknown spec fields: {', '.join(sorted(map(str, unknown)))}")
        project_id = _name(raw, "project_id")
        model_id = _name(raw, "model_id")
        roles = {role: _column_list(raw, role) for role in ROLES}
        _check_disjoint(roles)
        task = _enum(Task, raw.get("task", Task.BINARY_CLASSIFICATION.value), "task")
        column_types = _column_types(raw.get("column_types") or {}, roles)
        threshold = raw.get("threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise InvalidSpecError(f"threshold must be a number, got {shown(threshold)}")
        if not 0.0 < float(threshold) < 1.0:
            raise InvalidSpecError(f"threshold must be strictly between 0 and 1, got {threshold}")
        classes = raw.get("classes") or ()
        if not isinstance(classes, list | tuple):
            raise InvalidSpecError("classes must be a list of class labels, one per output")
        classes = tuple(_label(label, f"classes[{index}]") for index, label in enumerate(classes))
        if len(set(classes)) != len(classes):
            raise InvalidSpecError(f"classes must be distinct labels, got {shown(list(classes))}")
        if not roles["outputs"]:
            raise InvalidSpecError("a model needs at least one output column")
        if task is Task.MULTICLASS_CLASSIFICATION and len(classes) != len(roles["outputs"]):
            raise InvalidSpecError(
                "a multiclass model needs its class list ('classes') and one output column "
                f"per class: got {len(classes)} classes and {len(roles['outputs'])} outputs"
            )
        if task is not Task.REGRESSION and len(roles["targets"]) > 1:
            raise InvalidSpecError("a classification model has at most one target column")
        return cls(
            project_id=project_id,
            model_id=model_id,
            task=task,
            event_id_col=_str(raw, "event_id_col", "event_id"),
            event_ts_col=_str(raw, "event_ts_col", "timestamp"),
            column_types=column_types,
            positive_class=_label(raw.get("positive_class", 1), "positive_class"),
            threshold=float(threshold),
            classes=classes,
            **roles,
        )


def _label(value: Any, field_name: str) -> Any:
    """A class label: what a target column holds (text, a number or a boolean); a list or
    an object could never equal a target, and the model would silently have no positives."""
    if isinstance(value, str | int | float | bool) and value == value:  # NaN is no label
        return value
    raise InvalidSpecError(
        f"{field_name} must be a class label (text, a number or true/false), got {shown(value)}"
    )


def _name(raw: Mapping[str, Any], field_name: str) -> str:
    value = raw.get(field_name)
    problem = name_problem(value, field_name)
    if problem is not None:
        raise InvalidSpecError(problem)
    return str(value)


def _str(raw: Mapping[str, Any], field_name: str, default: str) -> str:
    value = raw.get(field_name, default)
    if not isinstance(value, str) or not value:
        raise InvalidSpecError(f"{field_name} must be a non-empty string, got {shown(value)}")
    return value


def _column_list(raw: Mapping[str, Any], role: str) -> tuple[str, ...]:
    value = raw.get(role) or ()
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, list | tuple) or not all(
        isinstance(name, str) and name for name in value
    ):
        raise InvalidSpecError(f"{role} must be a list of column names, got {shown(value)}")
    if len(set(value)) != len(value):
        raise InvalidSpecError(f"{role} lists a column twice: {', '.join(value)}")
    return tuple(value)


def _check_disjoint(roles: Mapping[str, tuple[str, ...]]) -> None:
    seen: dict[str, str] = {}
    for role, names in roles.items():
        for name in names:
            if name in seen:
                raise InvalidSpecError(f"column '{name}' is listed in both {seen[name]} and {role}")
            seen[name] = role


def _column_types(raw: Any, roles: Mapping[str, tuple[str, ...]]) -> dict[str, ColumnType]:
    if not isinstance(raw, Mapping):
        raise InvalidSpecError("column_types must map column names to types")
    known = {name for names in roles.values() for name in names}
    types: dict[str, ColumnType] = {}
    for name, kind in raw.items():
        if name not in known:
            raise InvalidSpecError(f"column_types names '{name}', which is in no column list")
        types[name] = _enum(ColumnType, kind, f"type of column '{name}'")
    return types


def _enum(kind: type[E], value: Any, what: str) -> E:
    return enum_member(kind, value, what, InvalidSpecError)
