"""The baseline profile: the bins every production value is counted in.

Drift (SPEC §3) compares an hour's histogram with the baseline's over the *same* bins, and
hour bins must stay subtractable, so the bins are fixed once, at registration, from the
baseline. Numeric columns get quantile edges with open outer bins, so a production value
far outside the baseline still lands in a bin; categorical columns get the baseline's
categories plus one ``__other__`` bin for unseen values. The same profile answers the
data-integrity questions: does a value have the column's type, and is it inside the
baseline's range.

One set of value rules serves the baseline and every event, so that the streaming
counters and a batch recomputation agree:

- null: None, a NaN float, pandas' NA or NaT. Nulls are counted apart, never binned.
- int columns take ints and whole-number floats (pandas turns an int column with one
  missing value into floats, and JSON keeps ``3.0`` a float), never bools.
- float columns take ints and finite floats, never bools; ±inf, which JSON cannot
  carry, is a type mismatch.
- bool columns take bools only. category and str columns take strings only: a ``1`` sent
  for the category ``"1"`` is a mismatch, because converting silently would hide a
  producer that sends the wrong type.
- numpy scalars count as the Python value they hold.

A baseline value of the wrong type is counted in ``mismatches``: neither null nor binned,
so ``sum(histogram) + nulls + mismatches == rows``.

``str`` columns are free text: their bins are the ``MAX_STR_CATEGORIES`` most frequent
baseline values plus ``__other__`` (a column of unique ids must not cost one counter per
id in every hour bin), and they have no range, so ``out_of_range`` is always false.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from driftline.state.spec import ColumnType, InvalidSpecError, ModelSpec, Task
from driftline.state.wording import enum_member, shown

NUMERIC_BINS = 10
# Inference: a text column is a category when it has at most this many distinct values
# and each value repeats on average (distinct <= half the non-null values); otherwise an
# id-like or free-text column would become a category whose every new value is a range
# violation.
MAX_INFERRED_CATEGORIES = 50
MAX_STR_CATEGORIES = 100

_QUANTILES = tuple(i / NUMERIC_BINS for i in range(1, NUMERIC_BINS))
_NUMERIC = frozenset({ColumnType.INT, ColumnType.FLOAT})
_TEXT = frozenset({ColumnType.CATEGORY, ColumnType.STR})


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    """One column's baseline: its bins, its range and how the baseline filled them.

    Numeric bins are ``(-inf, e0), [e0, e1), ..., [e_last, +inf)``; categorical bins are
    one per category, in ``categories`` order, then ``__other__``. An empty ``histogram``
    is read as all zeros, so a profile built by hand needs only its bins.
    """

    name: str
    kind: ColumnType
    edges: tuple[float, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    categories: tuple[str, ...] = ()
    histogram: tuple[int, ...] = ()
    nulls: int = 0
    rows: int = 0
    mismatches: int = 0
    _index: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ColumnType(self.kind))
        object.__setattr__(self, "edges", tuple(float(edge) for edge in self.edges))
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "histogram", tuple(self.histogram) or (0,) * self.bin_count)
        _check_column(self)
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.categories)})

    @property
    def numeric(self) -> bool:
        return self.kind in _NUMERIC

    @property
    def bin_count(self) -> int:
        return len(self.edges) + 1 if self.numeric else len(self.categories) + 1

    def type_matches(self, value: Any) -> bool:
        """Not null and of the column's type (rules in the module docstring)."""
        value = _plain(value)
        return not _null(value) and _matches(self.kind, value)

    def bin_of(self, value: Any) -> int | None:
        """Bin index of a non-null value of the column's type; None for null or a mismatch."""
        value = _plain(value)
        if _null(value) or not _matches(self.kind, value):
            return None
        if self.numeric:
            # float() first: the baseline was binned as float64, a huge int must agree.
            return bisect_right(self.edges, float(value))
        return self._index.get(str(value), len(self.categories))

    def out_of_range(self, value: Any) -> bool:
        """A range violation (SPEC §3); False for null, a mismatch, or no baseline values.

        Numeric: outside ``[minimum, maximum]``. category/bool: not a baseline category.
        str: never (free text has no range).
        """
        value = _plain(value)
        if _null(value) or not _matches(self.kind, value):
            return False
        if self.numeric:
            if self.minimum is None or self.maximum is None:
                return False
            return not self.minimum <= float(value) <= self.maximum
        if self.kind is ColumnType.STR:
            return False
        return bool(self.categories) and str(value) not in self._index

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind.value,
            "edges": list(self.edges),
            "minimum": self.minimum,
            "maximum": self.maximum,
            "categories": list(self.categories),
            "histogram": list(self.histogram),
            "nulls": self.nulls,
            "rows": self.rows,
            "mismatches": self.mismatches,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ColumnProfile:
        """A profile from its stored JSON form; InvalidSpecError says what is wrong."""
        raw = _mapping(raw, "a column profile", _COLUMN_FIELDS)
        return cls(
            name=_text(raw.get("name"), "column profile name"),
            kind=_kind(raw.get("kind")),
            edges=tuple(_number(v, "an edge") for v in _list(raw, "edges")),
            minimum=_optional_number(raw.get("minimum"), "minimum"),
            maximum=_optional_number(raw.get("maximum"), "maximum"),
            categories=tuple(_text(v, "a category") for v in _list(raw, "categories")),
            histogram=tuple(_count(v, "a histogram count") for v in _list(raw, "histogram")),
            nulls=_count(raw.get("nulls", 0), "nulls"),
            rows=_count(raw.get("rows", 0), "rows"),
            mismatches=_count(raw.get("mismatches", 0), "mismatches"),
        )


_COLUMN_FIELDS = frozenset(
    {
        "name",
        "kind",
        "edges",
        "minimum",
        "maximum",
        "categories",
        "histogram",
        "nulls",
        "rows",
        "mismatches",
    }
)


@dataclass(frozen=True, slots=True)
class BaselineProfile:
    """The profile of every input and output column, keyed by column name."""

    columns: Mapping[str, ColumnProfile]
    rows: int

    def __post_init__(self) -> None:
        for name, column in self.columns.items():
            if name != column.name:
                raise InvalidSpecError(f"profile of column '{column.name}' is filed as '{name}'")
        _count(self.rows, "baseline rows")

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": [c.to_dict() for c in self.columns.values()]}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> BaselineProfile:
        raw = _mapping(raw, "a baseline profile", frozenset({"rows", "columns"}))
        columns: dict[str, ColumnProfile] = {}
        for item in _list(raw, "columns"):
            column = ColumnProfile.from_dict(item)
            if column.name in columns:
                raise InvalidSpecError(f"the baseline profile has column '{column.name}' twice")
            columns[column.name] = column
        return cls(columns=columns, rows=_count(raw.get("rows"), "baseline rows"))


class BaselineTypeError(InvalidSpecError):
    """A baseline whose values contradict a column's type in every row: refused (SPEC §1)."""


@dataclass(frozen=True, slots=True)
class TypeContradiction:
    """Baseline values of a column that are not of the column's type.

    ``observed`` counts the mismatching values by the type they have (``bool``, ``int``,
    ``float``, ``str``, ``list``, ``object``...), most frequent first; ``present`` is the
    column's non-null values, so ``total`` means no value at all fits the column.
    """

    column: str
    kind: ColumnType
    declared: bool
    observed: tuple[tuple[str, int], ...]
    present: int

    @property
    def mismatched(self) -> int:
        return sum(count for _, count in self.observed)

    @property
    def total(self) -> bool:
        return self.mismatched == self.present

    def message(self) -> str:
        """A sentence naming the column, its type and the types its values have."""
        how = "declared" if self.declared else "inferred as"
        seen = ", ".join(f"{name} ({count:,})" for name, count in self.observed)
        if self.total:
            return (
                f"column '{self.column}' is {how} {self.kind.value} but every non-null "
                f"baseline value is of another type: {seen}; declare the column's type "
                "as what its values are (column_types), or fix the baseline"
            )
        return (
            f"column '{self.column}' is {how} {self.kind.value} but {self.mismatched:,} of "
            f"its {self.present:,} non-null baseline values are of another type: {seen}; "
            "they count as type mismatches, not in its drift baseline"
        )


@dataclass(frozen=True, slots=True)
class CheckedBaseline:
    """A baseline profile that may be registered, and the warnings it deserves."""

    profile: BaselineProfile
    warnings: tuple[str, ...] = ()


def type_contradiction(
    name: str, kind: ColumnType, values: Iterable[Any], *, declared: bool = True
) -> TypeContradiction | None:
    """The values of a column that contradict its type, or None if every one fits.

    Nulls say nothing about a type and are not counted. Uses the same rules as
    ``ColumnProfile.type_matches``, so a contradiction here is a type mismatch there.
    """
    present = 0
    observed: Counter[str] = Counter()
    for value in map(_plain, values):
        if _null(value):
            continue
        present += 1
        if not _matches(kind, value):
            observed[observed_type(value)] += 1
    if not observed:
        return None
    ordered = tuple(sorted(observed.items(), key=lambda item: (-item[1], item[0])))
    return TypeContradiction(name, kind, declared, ordered, present)


def observed_type(value: Any) -> str:
    """A plain name for the type of a non-null value, as a user would call it."""
    value = _plain(value)
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _fits_float(value) else "int (beyond float64)"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "float (infinite)"
        return "float (whole)" if value.is_integer() else "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def check_baseline(spec: ModelSpec, rows: Iterable[Mapping[str, Any]]) -> CheckedBaseline:
    """Profile the baseline and hold it against the column types (SPEC §1).

    A column whose every non-null value contradicts its type would count each production
    value as a type mismatch and never drift: it is refused (``BaselineTypeError``, every
    such column named). A column where only some values contradict registers with a
    warning. The API, the client and the CLI all register through this check.
    """
    values, count = _baseline_values(spec, rows)
    kinds = _column_kinds(spec, values)
    found = [
        contradiction
        for name, column in values.items()
        if (
            contradiction := type_contradiction(
                name, kinds[name], column, declared=name in spec.column_types
            )
        )
        is not None
    ]
    refused = [c.message() for c in found if c.total]
    if refused:
        raise BaselineTypeError("the baseline contradicts its column types: " + "; ".join(refused))
    profile = _profile(values, kinds, count)
    return CheckedBaseline(profile, tuple(c.message() for c in found))


def profile_baseline(spec: ModelSpec, rows: Iterable[Mapping[str, Any]]) -> BaselineProfile:
    """Profile every input and output column of ``spec`` over the baseline rows.

    Types come from ``spec.column_types``, else from ``infer_column_type``. An empty
    baseline, or a spec column that no baseline row has (most likely a misspelt name),
    is refused: its profile would silently be all nulls. Values that contradict their
    column's type are counted as mismatches; ``check_baseline`` is the registration path
    that refuses or warns about them.
    """
    values, count = _baseline_values(spec, rows)
    return _profile(values, _column_kinds(spec, values), count)


def _baseline_values(
    spec: ModelSpec, rows: Iterable[Mapping[str, Any]]
) -> tuple[dict[str, list[Any]], int]:
    """Every input and output column's baseline values, and the number of rows."""
    names = (*spec.inputs, *spec.outputs)
    values: dict[str, list[Any]] = {name: [] for name in names}
    absent = set(names)
    count = 0
    for row in rows:
        count += 1
        if absent:
            absent.difference_update(row.keys())
        for name, column in values.items():
            column.append(row.get(name))
    if count == 0:
        raise InvalidSpecError("the baseline has no rows; a model needs a baseline to profile")
    if absent:
        raise InvalidSpecError(
            f"spec columns missing from every baseline row: {', '.join(sorted(absent))}"
        )
    return values, count


def _column_kinds(spec: ModelSpec, values: Mapping[str, list[Any]]) -> dict[str, ColumnType]:
    return {
        name: spec.column_types.get(name) or infer_column_type(column)
        for name, column in values.items()
    }


def _profile(
    values: Mapping[str, list[Any]], kinds: Mapping[str, ColumnType], count: int
) -> BaselineProfile:
    profiles = {name: profile_column(name, kinds[name], column) for name, column in values.items()}
    return BaselineProfile(columns=profiles, rows=count)


def profile_column(name: str, kind: ColumnType, values: Sequence[Any]) -> ColumnProfile:
    """The profile of one column from all its baseline values (nulls and mismatches too)."""
    plain = [_plain(value) for value in values]
    nulls = sum(1 for value in plain if _null(value))
    typed = [value for value in plain if not _null(value) and _matches(kind, value)]
    mismatches = len(plain) - nulls - len(typed)
    if kind in _NUMERIC:
        column = _numeric_profile(name, kind, typed)
    else:
        column = _categorical_profile(name, kind, typed)
    return replace(column, nulls=nulls, rows=len(plain), mismatches=mismatches)


def _numeric_profile(name: str, kind: ColumnType, typed: list[Any]) -> ColumnProfile:
    """Decile edges; repeated quantiles (a discrete column) merge, giving fewer bins."""
    array = np.asarray([float(value) for value in typed], dtype=np.float64)
    if array.size == 0:
        return ColumnProfile(name, kind)
    edges = np.unique(np.quantile(array, _QUANTILES, method="linear"))
    counts = np.bincount(np.searchsorted(edges, array, side="right"), minlength=edges.size + 1)
    return ColumnProfile(
        name,
        kind,
        edges=tuple(float(edge) for edge in edges),
        minimum=float(array.min()),
        maximum=float(array.max()),
        histogram=tuple(int(n) for n in counts),
    )


def _categorical_profile(name: str, kind: ColumnType, typed: list[Any]) -> ColumnProfile:
    """Categories sorted (stable whatever the row order); the rest counts in ``__other__``."""
    counts = Counter(str(value) for value in typed)
    kept = _most_frequent(counts, MAX_STR_CATEGORIES) if kind is ColumnType.STR else counts
    categories = tuple(sorted(kept))
    histogram = [counts[category] for category in categories]
    histogram.append(len(typed) - sum(histogram))
    return ColumnProfile(name, kind, categories=categories, histogram=tuple(histogram))


def _most_frequent(counts: Counter[str], limit: int) -> list[str]:
    """The ``limit`` most frequent values, ties broken by value so the order is stable."""
    return sorted(counts, key=lambda value: (-counts[value], value))[:limit]


def infer_column_type(
    values: Sequence[Any], *, max_categories: int = MAX_INFERRED_CATEGORIES
) -> ColumnType:
    """The type a column's baseline values show, as ``from_data`` would infer it.

    bool if every non-null value is a bool; int if every one is an int; float if every
    one is a number (a whole-number float stays float: it says nothing about the next
    value). Anything else is text: category when it has few distinct values that repeat
    (see ``MAX_INFERRED_CATEGORIES``), str otherwise; in a mixed column the non-strings
    then count as mismatches. A column with no values at all is float, the numeric type
    that accepts every number: most such columns are scores or labels not yet filled.
    """
    present = [value for value in map(_plain, values) if not _null(value)]
    if not present:
        return ColumnType.FLOAT
    if all(isinstance(value, bool) for value in present):
        return ColumnType.BOOL
    if all(isinstance(value, int) and not isinstance(value, bool) for value in present):
        return ColumnType.INT
    if all(_matches(ColumnType.FLOAT, value) for value in present):
        return ColumnType.FLOAT
    distinct = len({str(value) for value in present})
    if distinct <= max_categories and 2 * distinct <= len(present):
        return ColumnType.CATEGORY
    return ColumnType.STR


def spec_from_data(
    project_id: str,
    model_id: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    inputs: Sequence[str] | None = None,
    outputs: Sequence[str],
    targets: Sequence[str] = (),
    decisions: Sequence[str] = (),
    metadata: Sequence[str] = (),
    task: Task | str = Task.BINARY_CLASSIFICATION,
    event_id_col: str = "event_id",
    event_ts_col: str = "timestamp",
    **spec_fields: Any,
) -> ModelSpec:
    """A validated ModelSpec whose column types are inferred from the rows (``from_data``).

    ``inputs=None``: every column the rows have that no other role, nor the id or time
    column, names. Inputs, outputs, targets and decisions are all typed; metadata only
    when its values are plainly bool or numeric (ids and uris need no type). Types given
    in ``column_types`` win over inferred ones. Invalid roles raise InvalidSpecError.
    """
    table = list(rows)
    roles = {
        "outputs": _names(outputs, "outputs"),
        "targets": _names(targets, "targets"),
        "decisions": _names(decisions, "decisions"),
        "metadata": _names(metadata, "metadata"),
    }
    if inputs is None:
        named = {event_id_col, event_ts_col, *(n for names in roles.values() for n in names)}
        roles["inputs"] = tuple(n for n in _column_names(table) if n not in named)
    else:
        roles["inputs"] = _names(inputs, "inputs")
    missing = [n for n in (*roles["inputs"], *roles["outputs"]) if not _in_any(table, n)]
    if missing:
        raise InvalidSpecError(f"columns missing from every row of the data: {', '.join(missing)}")
    types = _inferred_types(table, roles)
    types.update(dict(spec_fields.pop("column_types", None) or {}))
    raw = {
        "project_id": project_id,
        "model_id": model_id,
        **{role: list(names) for role, names in roles.items()},
        "task": task,
        "event_id_col": event_id_col,
        "event_ts_col": event_ts_col,
        "column_types": types,
        **spec_fields,
    }
    return ModelSpec.from_dict(raw)


def _inferred_types(
    table: list[Mapping[str, Any]], roles: Mapping[str, tuple[str, ...]]
) -> dict[str, Any]:
    typed = (*roles["inputs"], *roles["outputs"], *roles["targets"], *roles["decisions"])
    types: dict[str, Any] = {n: infer_column_type([r.get(n) for r in table]) for n in typed}
    for name in roles["metadata"]:
        values = [row.get(name) for row in table]
        kind = infer_column_type(values)
        if kind not in _TEXT and any(not _null(_plain(v)) for v in values):
            types[name] = kind
    return types


def _names(names: Sequence[str], role: str) -> tuple[str, ...]:
    # A lone string is one column, not a sequence of one-letter columns.
    if isinstance(names, str):
        return (names,)
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) and n for n in names):
        raise InvalidSpecError(f"{role} must be a list of column names")
    return tuple(names)


def _column_names(table: list[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(name) for row in table for name in row))


def _in_any(table: list[Mapping[str, Any]], name: str) -> bool:
    return any(name in row for row in table)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _null(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _matches(kind: ColumnType, value: Any) -> bool:
    """``value`` (plain, not null) has type ``kind``; rules in the module docstring."""
    if kind is ColumnType.BOOL:
        return isinstance(value, bool)
    if kind in _TEXT:
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):
        return _fits_float(value)
    return value.is_integer() if kind is ColumnType.INT else math.isfinite(value)


def _fits_float(value: int) -> bool:
    """Values are binned as float64: an integer beyond it is as an infinite float would be."""
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _check_column(column: ColumnProfile) -> None:
    """The invariants bin_of relies on; a profile breaking one was built wrong."""
    where = f"profile of column '{column.name}'"
    if column.numeric:
        if column.categories:
            raise InvalidSpecError(f"{where}: a {column.kind} column has no categories")
        if not all(math.isfinite(e) for e in column.edges) or any(
            a >= b for a, b in zip(column.edges, column.edges[1:], strict=False)
        ):
            raise InvalidSpecError(f"{where}: edges must be finite and strictly ascending")
        if (column.minimum is None) != (column.maximum is None) or (
            column.minimum is not None
            and column.maximum is not None
            and not column.minimum <= column.maximum
        ):
            raise InvalidSpecError(f"{where}: minimum and maximum must both be set, min <= max")
    else:
        if column.edges or column.minimum is not None or column.maximum is not None:
            raise InvalidSpecError(f"{where}: a {column.kind} column has no edges nor min/max")
        if len(set(column.categories)) != len(column.categories):
            raise InvalidSpecError(f"{where}: categories repeat")
    if len(column.histogram) != column.bin_count:
        raise InvalidSpecError(
            f"{where}: histogram has {len(column.histogram)} counts for {column.bin_count} bins"
        )
    if any(n < 0 for n in (*column.histogram, column.nulls, column.rows, column.mismatches)):
        raise InvalidSpecError(f"{where}: counts must not be negative")


def _mapping(raw: Any, what: str, known: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidSpecError(f"{what} must be a mapping, got {type(raw).__name__}")
    unknown = set(raw) - known
    if unknown:
        raise InvalidSpecError(f"{what} has unknown fields: {sorted(unknown)}")
    return raw


def _list(raw: Mapping[str, Any], key: str) -> list[Any] | tuple[Any, ...]:
    value = raw.get(key, ())
    if not isinstance(value, list | tuple):
        raise InvalidSpecError(f"{key} must be a list, got {shown(value)}")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidSpecError(f"{what} must be a string, got {shown(value)}")
    return value


def _kind(value: Any) -> ColumnType:
    return enum_member(ColumnType, value, "column kind", InvalidSpecError)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidSpecError(f"{what} must be a number, got {shown(value)}")
    return float(value)


def _optional_number(value: Any, what: str) -> float | None:
    return None if value is None else _number(value, what)


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidSpecError(f"{what} must be a non-negative integer, got {shown(value)}")
    return value
