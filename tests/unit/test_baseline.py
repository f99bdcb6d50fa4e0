"""Baseline profiles (SPEC §1, §3), checked against numpy and plain counting."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftline.state.baseline import (
    MAX_STR_CATEGORIES,
    NUMERIC_BINS,
    BaselineProfile,
    BaselineTypeError,
    ColumnProfile,
    check_baseline,
    infer_column_type,
    observed_type,
    profile_baseline,
    profile_column,
    spec_from_data,
    type_contradiction,
)
from driftline.state.spec import ColumnType, InvalidSpecError, ModelSpec, Task
from driftline.state.tabular import iter_rows, json_value

DECILES = [i / 10 for i in range(1, 10)]

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)
ints = st.integers(min_value=-(10**6), max_value=10**6)
numbers = st.one_of(finite, ints)
nullish = st.sampled_from([None, float("nan")])
words = st.text(alphabet="abcdef", min_size=1, max_size=3)


def is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def expected_edges(values: list[float]) -> list[float]:
    return sorted(set(np.quantile(np.asarray(values, dtype=float), DECILES).tolist()))


def bins_containing(edges: tuple[float, ...], value: float) -> list[int]:
    """Every bin of (-inf, e0), [e0, e1), ..., [e_last, inf) that holds `value`."""
    bounds = [-math.inf, *edges, math.inf]
    return [i for i in range(len(bounds) - 1) if bounds[i] <= value < bounds[i + 1]]


# --- numeric columns -------------------------------------------------------------------


@given(st.lists(st.one_of(numbers, nullish), min_size=1, max_size=300))
def test_numeric_profile_matches_numpy(values: list[Any]) -> None:
    column = profile_column("x", ColumnType.FLOAT, values)
    present = [float(v) for v in values if not is_null(v)]

    assert column.rows == len(values)
    assert column.nulls == len(values) - len(present)
    assert column.mismatches == 0
    assert sum(column.histogram) + column.nulls == column.rows
    assert column.bin_count == len(column.edges) + 1 == len(column.histogram)
    if not present:
        assert (column.edges, column.minimum, column.maximum) == ((), None, None)
        return
    assert list(column.edges) == pytest.approx(expected_edges(present), rel=0, abs=0)
    assert column.minimum == min(present)
    assert column.maximum == max(present)
    reference, _ = np.histogram(present, bins=[-np.inf, *column.edges, np.inf])
    assert list(column.histogram) == reference.tolist()
    for value in present:
        (only,) = bins_containing(column.edges, value)
        assert column.bin_of(value) == only
        assert not column.out_of_range(value)


@given(st.lists(numbers, min_size=1, max_size=200), numbers)
def test_every_number_lands_in_exactly_one_bin(baseline: list[Any], probe: Any) -> None:
    column = profile_column("x", ColumnType.FLOAT, baseline)
    (only,) = bins_containing(column.edges, float(probe))
    assert column.bin_of(probe) == only
    assert column.out_of_range(probe) == (not min(baseline) <= probe <= max(baseline))


def test_outer_bins_are_open() -> None:
    column = profile_column("x", ColumnType.FLOAT, [float(v) for v in range(1000)])
    assert len(column.edges) == NUMERIC_BINS - 1
    assert column.bin_of(-1e300) == 0
    assert column.bin_of(1e300) == column.bin_count - 1
    assert column.out_of_range(-0.5)
    assert column.out_of_range(999.5)
    assert not column.out_of_range(0.0)
    assert not column.out_of_range(999)
    assert column.histogram == (100,) * NUMERIC_BINS


def test_discrete_column_has_deduplicated_edges() -> None:
    values = [1] * 50 + [2] * 30 + [3] * 20
    column = profile_column("x", ColumnType.INT, values)
    assert list(column.edges) == expected_edges([float(v) for v in values])
    assert len(set(column.edges)) == len(column.edges) < NUMERIC_BINS - 1
    assert all(a < b for a, b in zip(column.edges, column.edges[1:], strict=False))
    assert sum(column.histogram) == 100
    assert column.histogram[column.bin_of(1) or 0] == 50


def test_constant_column_has_one_edge() -> None:
    column = profile_column("x", ColumnType.FLOAT, [4.2] * 10)
    assert column.edges == (4.2,)
    assert column.histogram == (0, 10)
    assert column.bin_of(4.1) == 0
    assert column.out_of_range(4.1)


def test_column_without_values_has_one_bin_and_no_range() -> None:
    column = profile_column("x", ColumnType.FLOAT, [None, float("nan"), "oops"])
    assert column.edges == ()
    assert (column.minimum, column.maximum) == (None, None)
    assert column.histogram == (0,)
    assert (column.nulls, column.mismatches, column.rows) == (2, 1, 3)
    assert column.bin_of(123.0) == 0
    assert not column.out_of_range(123.0)


# --- categorical columns ---------------------------------------------------------------


@given(st.lists(st.one_of(words, st.none()), min_size=1, max_size=200), words)
def test_category_histogram_counts_each_value(values: list[Any], probe: str) -> None:
    column = profile_column("c", ColumnType.CATEGORY, values)
    counts = Counter(v for v in values if v is not None)
    assert set(column.categories) == set(counts)
    assert list(column.categories) == sorted(counts)
    assert column.histogram == (*(counts[c] for c in column.categories), 0)
    assert sum(column.histogram) + column.nulls == column.rows == len(values)
    other = len(column.categories)
    expected_bin = column.categories.index(probe) if probe in counts else other
    assert column.bin_of(probe) == expected_bin
    assert column.out_of_range(probe) == (probe not in counts and bool(counts))


def test_unseen_category_goes_to_other_and_is_out_of_range() -> None:
    column = profile_column("c", ColumnType.CATEGORY, ["b", "a", "b", "c"])
    assert column.categories == ("a", "b", "c")
    assert column.bin_count == 4
    assert column.bin_of("zebra") == 3
    assert column.out_of_range("zebra")
    assert not column.out_of_range("a")


def test_bool_column_bins_by_value() -> None:
    column = profile_column("f", ColumnType.BOOL, [True, False, True, None, 1])
    assert column.categories == ("False", "True")
    assert column.histogram == (1, 2, 0)
    assert (column.nulls, column.mismatches) == (1, 1)
    assert column.bin_of(True) == 1
    assert column.bin_of(np.bool_(False)) == 0
    assert column.bin_of(1) is None


def test_str_column_keeps_most_frequent_values_and_has_no_range() -> None:
    values = ["common"] * 5 + [f"id-{i:04d}" for i in range(500)]
    column = profile_column("t", ColumnType.STR, values)
    assert len(column.categories) == MAX_STR_CATEGORIES
    assert "common" in column.categories
    assert sum(column.histogram) == len(values)
    assert column.histogram[-1] == len(values) - 5 - (MAX_STR_CATEGORIES - 1)
    assert column.bin_of("never seen") == MAX_STR_CATEGORIES
    assert not column.out_of_range("never seen")
    # Order-independent: a shuffled baseline gives the same profile.
    assert profile_column("t", ColumnType.STR, values[::-1]) == column


# --- types -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        (ColumnType.INT, [3, -1, 3.0, np.int64(7)], [True, 3.5, "3", [3], math.inf]),
        (ColumnType.FLOAT, [3, 2.5, np.float32(1.5)], [False, "2.5", math.inf, {"a": 1}]),
        (ColumnType.BOOL, [True, False, np.bool_(True)], [1, 0.0, "True"]),
        (ColumnType.CATEGORY, ["a", ""], [1, True, 1.5]),
        (ColumnType.STR, ["a"], [1, False]),
    ],
)
def test_type_matches(kind: ColumnType, good: list[Any], bad: list[Any]) -> None:
    column = profile_column("x", kind, good)
    assert column.mismatches == 0
    for value in good:
        assert column.type_matches(value)
        assert column.bin_of(value) is not None
    for value in bad:
        assert not column.type_matches(value)
        assert column.bin_of(value) is None
        assert not column.out_of_range(value)
    for null in (None, float("nan"), np.nan, pd.NA):
        assert not column.type_matches(null)
        assert column.bin_of(null) is None
        assert not column.out_of_range(null)


def test_baseline_mismatches_are_neither_nulls_nor_binned() -> None:
    column = profile_column("x", ColumnType.INT, [1, 2, "three", True, None, 4.5])
    assert (column.nulls, column.mismatches, column.rows) == (1, 3, 6)
    assert sum(column.histogram) == 2
    assert (column.minimum, column.maximum) == (1.0, 2.0)


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([True, False, None, True], ColumnType.BOOL),
        ([1, 2, None, 3], ColumnType.INT),
        ([1, 2.5, float("nan")], ColumnType.FLOAT),
        ([1.0, 2.0], ColumnType.FLOAT),
        ([np.int64(1), np.int64(2)], ColumnType.INT),
        (["red", "blue", "red", "green", "blue", "red"], ColumnType.CATEGORY),
        ([f"user-{i}" for i in range(200)], ColumnType.STR),
        ([["a", "b"][i % 2] for i in range(10)] + [f"rare-{i}" for i in range(60)], ColumnType.STR),
        (["a", "a", 1, "a"], ColumnType.CATEGORY),
        ([True, 1], ColumnType.STR),
        ([None, float("nan")], ColumnType.FLOAT),
        ([], ColumnType.FLOAT),
    ],
)
def test_infer_column_type(values: list[Any], kind: ColumnType) -> None:
    assert infer_column_type(values) is kind


def test_category_threshold_is_a_parameter() -> None:
    values = [f"v{i % 60}" for i in range(600)]
    assert infer_column_type(values) is ColumnType.STR
    assert infer_column_type(values, max_categories=60) is ColumnType.CATEGORY


# --- serialisation ---------------------------------------------------------------------

kinds = st.sampled_from(list(ColumnType))
cells = st.one_of(numbers, words, st.booleans(), nullish)


@given(st.dictionaries(words, st.tuples(kinds, st.lists(cells, max_size=60)), min_size=1))
def test_json_round_trip(columns: dict[str, tuple[ColumnType, list[Any]]]) -> None:
    profiles = {name: profile_column(name, kind, vals) for name, (kind, vals) in columns.items()}
    profile = BaselineProfile(columns=profiles, rows=max(len(v) for _, v in columns.values()))
    again = BaselineProfile.from_dict(json.loads(json.dumps(profile.to_dict(), allow_nan=False)))
    assert again == profile
    for name, column in again.columns.items():
        assert ColumnProfile.from_dict(column.to_dict()) == profiles[name]
        assert [column.bin_of(v) for v in columns[name][1]] == [
            profiles[name].bin_of(v) for v in columns[name][1]
        ]


def test_histogram_defaults_to_zeros_for_a_hand_built_profile() -> None:
    column = ColumnProfile("x", ColumnType.FLOAT, edges=(1.0, 2.0), minimum=0.0, maximum=3.0)
    assert column.histogram == (0, 0, 0)


@pytest.mark.parametrize(
    "change",
    [
        {"edges": [2.0, 1.0], "histogram": [0, 0, 0]},
        {"edges": [1.0, 1.0], "histogram": [0, 0, 0]},
        {"histogram": [1, 2, 3]},
        {"histogram": [-1, 0]},
        {"kind": "decimal"},
        {"categories": ["a"]},
        {"minimum": 5.0, "maximum": 1.0},
        {"minimum": 5.0, "maximum": None},
        {"nulls": True},
        {"surprise": 1},
    ],
)
def test_from_dict_rejects_a_broken_profile(change: dict[str, Any]) -> None:
    raw = ColumnProfile("x", ColumnType.FLOAT, edges=(1.0,), minimum=0.0, maximum=2.0).to_dict()
    with pytest.raises(InvalidSpecError):
        ColumnProfile.from_dict({**raw, **change})


def test_baseline_from_dict_rejects_duplicate_columns() -> None:
    column = ColumnProfile("x", ColumnType.CATEGORY, categories=("a",)).to_dict()
    with pytest.raises(InvalidSpecError, match="twice"):
        BaselineProfile.from_dict({"rows": 1, "columns": [column, column]})


# --- whole baselines -------------------------------------------------------------------

SPEC = ModelSpec(
    project_id="p",
    model_id="m",
    inputs=("age", "city", "vip"),
    outputs=("score",),
    targets=("label",),
    metadata=("uri",),
    column_types={"age": ColumnType.INT},
)


def baseline_rows(n: int = 200) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    return [
        {
            "event_id": f"e{i}",
            "timestamp": 1_700_000_000_000 + i,
            "age": None if i % 17 == 0 else int(rng.integers(18, 90)),
            "city": ["paris", "lyon", "nice"][i % 3],
            "vip": bool(i % 2),
            "score": float(rng.random()),
            "label": int(i % 2),
            "uri": f"s3://bucket/{i}",
        }
        for i in range(n)
    ]


def test_profile_baseline_covers_inputs_and_outputs() -> None:
    rows = baseline_rows()
    profile = profile_baseline(SPEC, rows)
    assert list(profile.columns) == ["age", "city", "vip", "score"]
    assert profile.rows == len(rows)
    kinds = {name: column.kind for name, column in profile.columns.items()}
    assert kinds == {
        "age": ColumnType.INT,
        "city": ColumnType.CATEGORY,
        "vip": ColumnType.BOOL,
        "score": ColumnType.FLOAT,
    }
    for name, column in profile.columns.items():
        values = [row[name] for row in rows]
        assert column == profile_column(name, column.kind, values)
        assert sum(column.histogram) + column.nulls + column.mismatches == len(rows)
    age = profile.columns["age"]
    assert age.nulls == sum(1 for row in rows if row["age"] is None)


def test_profile_is_the_same_from_dicts_dataframe_csv_and_parquet(tmp_path: Path) -> None:
    rows = baseline_rows()
    frame = pd.DataFrame(rows)
    csv, parquet = tmp_path / "b.csv", tmp_path / "b.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)
    expected = profile_baseline(SPEC, rows)
    for source in (frame, csv, parquet):
        raw = list(iter_rows(source))  # numpy scalars and NaN, as pandas hands them out
        assert profile_baseline(SPEC, raw) == expected
        as_json = [{k: json_value(v, "row", k) for k, v in row.items()} for row in raw]
        assert profile_baseline(SPEC, as_json) == expected


def test_profile_baseline_refuses_an_empty_baseline_and_unknown_columns() -> None:
    with pytest.raises(InvalidSpecError, match="no rows"):
        profile_baseline(SPEC, [])
    rows = [{k: v for k, v in row.items() if k != "city"} for row in baseline_rows(5)]
    with pytest.raises(InvalidSpecError, match="city"):
        profile_baseline(SPEC, rows)


def test_spec_from_data_infers_types_and_inputs() -> None:
    rows = baseline_rows()
    spec = spec_from_data(
        "p", "m", rows, outputs=["score"], targets=["label"], metadata=["uri"], threshold=0.4
    )
    assert spec.inputs == ("age", "city", "vip")
    assert spec.outputs == ("score",)
    assert dict(spec.column_types) == {
        "age": ColumnType.INT,
        "city": ColumnType.CATEGORY,
        "vip": ColumnType.BOOL,
        "score": ColumnType.FLOAT,
        "label": ColumnType.INT,
    }
    assert spec.threshold == 0.4
    assert ModelSpec.from_dict(spec.to_dict()) == spec
    assert profile_baseline(spec, rows).columns["age"].kind is ColumnType.INT


def test_spec_from_data_explicit_inputs_types_and_metadata() -> None:
    rows = [{"a": i, "b": "x", "out": 0.1 * i, "y": 1.5, "tag": i} for i in range(10)]
    spec = spec_from_data(
        "p",
        "m",
        rows,
        inputs=("a",),
        outputs="out",
        targets=["y"],
        metadata=["tag"],
        task="regression",
        column_types={"a": "float"},
    )
    assert spec.inputs == ("a",)
    assert spec.outputs == ("out",)
    assert spec.task is Task.REGRESSION
    assert spec.column_types["a"] is ColumnType.FLOAT
    assert spec.column_types["tag"] is ColumnType.INT
    assert "b" not in spec.columns


def test_spec_from_data_validates_like_register() -> None:
    rows = baseline_rows(5)
    with pytest.raises(InvalidSpecError, match="both"):
        spec_from_data("p", "m", rows, outputs=["score"], targets=["score"])
    with pytest.raises(InvalidSpecError, match="missing"):
        spec_from_data("p", "m", rows, outputs=["scroe"])


# --- a baseline that contradicts its column types (SPEC §1) ----------------------------------


def flags_spec(kind: str = "category") -> ModelSpec:
    return ModelSpec.from_dict(
        {
            "project_id": "p",
            "model_id": "m",
            "inputs": ["flag", "age"],
            "outputs": ["score"],
            "column_types": {"flag": kind, "age": "int", "score": "float"},
        }
    )


def flag_rows(flags: list[Any]) -> list[dict[str, Any]]:
    return [{"flag": f, "age": 30 + i, "score": i / 100} for i, f in enumerate(flags)]


def test_a_boolean_column_declared_category_is_refused_naming_column_and_types() -> None:
    with pytest.raises(BaselineTypeError) as caught:
        check_baseline(flags_spec(), flag_rows([True, False, None] * 20))
    message = str(caught.value)
    assert "column 'flag' is declared category" in message
    assert "every non-null baseline value" in message
    assert "bool (40)" in message
    assert "None" not in message


@pytest.mark.parametrize(
    ("declared", "values", "observed"),
    [
        ("int", ["1", "2", "3"], "str (3)"),
        ("float", ["1.5", "x", None], "str (2)"),
        ("bool", [0, 1, 1], "int (3)"),
        ("bool", [0.0, 1.0], "float (whole) (2)"),
        ("str", [1, 2.5], "float (1), int (1)"),
        ("int", [1.5, 2.5], "float (2)"),
        ("float", [True, False], "bool (2)"),
    ],
)
def test_every_declared_type_refuses_values_all_of_another_type(
    declared: str, values: list[Any], observed: str
) -> None:
    with pytest.raises(BaselineTypeError, match=rf"declared {declared} .*: {re.escape(observed)}"):
        check_baseline(flags_spec(declared), flag_rows(values))


def test_a_partial_contradiction_registers_with_a_warning() -> None:
    checked = check_baseline(flags_spec(), flag_rows(["a", "b", True, "a", None]))
    assert checked.warnings == (
        "column 'flag' is declared category but 1 of its 4 non-null baseline values are of "
        "another type: bool (1); they count as type mismatches, not in its drift baseline",
    )
    assert checked.profile == profile_baseline(flags_spec(), flag_rows(["a", "b", True, "a", None]))
    assert checked.profile.columns["flag"].mismatches == 1


def test_values_the_type_accepts_raise_nothing() -> None:
    spec = ModelSpec.from_dict(
        {"project_id": "p", "model_id": "m", "inputs": ["n", "x"], "outputs": ["s"],
         "column_types": {"n": "int", "x": "float", "s": "float"}}
    )  # fmt: skip
    # Whole floats are ints (pandas' int column with a gap), ints are floats, nulls are nulls.
    rows = [{"n": 3.0, "x": 2, "s": 0.5}, {"n": None, "x": float("nan"), "s": 1}]
    assert check_baseline(spec, rows).warnings == ()


def test_an_inferred_type_says_so_in_its_warning() -> None:
    spec = ModelSpec.from_dict({"project_id": "p", "model_id": "m", "inputs": ["v"],
                                "outputs": ["s"]})  # fmt: skip
    rows = [{"v": v, "s": 0.1} for v in ["a", "b"] * 4 + [7]]
    (warning,) = check_baseline(spec, rows).warnings
    assert warning.startswith("column 'v' is inferred as category but 1 of its 9")
    assert "int (1)" in warning


def test_every_contradicting_column_is_named() -> None:
    spec = ModelSpec.from_dict(
        {"project_id": "p", "model_id": "m", "inputs": ["a", "b"], "outputs": ["s"],
         "column_types": {"a": "category", "b": "int", "s": "float"}}
    )  # fmt: skip
    with pytest.raises(BaselineTypeError) as caught:
        check_baseline(spec, [{"a": True, "b": "x", "s": 0.5}])
    assert "column 'a' is declared category" in str(caught.value)
    assert "column 'b' is declared int" in str(caught.value)


def test_observed_types_name_values_as_a_user_would() -> None:
    assert [observed_type(v) for v in (True, 3, 2**1100, 1.5, 2.0, math.inf, "x", [1], {})] == [
        "bool", "int", "int (beyond float64)", "float", "float (whole)", "float (infinite)",
        "str", "list", "object",
    ]  # fmt: skip
    assert observed_type(np.int64(3)) == "int"
    assert observed_type(np.bool_(True)) == "bool"


values_of_any_type = st.one_of(
    st.booleans(), ints, finite, st.floats(allow_nan=False), words, st.none(),
    st.lists(ints, max_size=2),
)  # fmt: skip


@given(st.sampled_from(list(ColumnType)), st.lists(values_of_any_type, max_size=80))
def test_contradictions_are_exactly_the_profiles_mismatches(
    kind: ColumnType, values: list[Any]
) -> None:
    found = type_contradiction("c", kind, values)
    column = profile_column("c", kind, values)
    present = sum(1 for v in values if not is_null(v))
    if found is None:
        assert column.mismatches == 0
        return
    assert found.mismatched == column.mismatches > 0
    assert found.present == present
    assert found.total == (sum(column.histogram) == 0)
    assert sum(n for _, n in found.observed) == found.mismatched


@given(st.sampled_from(list(ColumnType)), st.lists(values_of_any_type, min_size=1, max_size=60))
def test_check_baseline_refuses_exactly_when_no_value_fits(
    kind: ColumnType, values: list[Any]
) -> None:
    spec = flags_spec(kind.value)
    rows = [{"flag": v, "age": 30, "score": 0.5} for v in values]
    column = profile_column("flag", kind, values)
    if column.mismatches and not sum(column.histogram):
        with pytest.raises(BaselineTypeError, match="column 'flag'"):
            check_baseline(spec, rows)
    else:
        checked = check_baseline(spec, rows)
        assert len(checked.warnings) == (1 if column.mismatches else 0)
        assert checked.profile == profile_baseline(spec, rows)


@pytest.mark.parametrize(
    ("field", "value"),
    [("positive_class", [1]), ("positive_class", {"yes": 1}), ("positive_class", None),
     ("classes", [["a"], "b"]), ("classes", ["a", "a"])],
)  # fmt: skip
def test_a_class_label_is_text_a_number_or_a_boolean(field: str, value: object) -> None:
    """A list or an object can never equal a target: such a spec would register and then
    count no positive at all."""
    raw: dict[str, object] = {"project_id": "p", "model_id": "m", field: value}
    if field == "classes":
        raw.update(task="multiclass_classification", outputs=["p_a", "p_b"])
    else:
        raw.update(outputs=["score"])
    with pytest.raises(InvalidSpecError, match=field.split("[")[0]):
        ModelSpec.from_dict(raw)
