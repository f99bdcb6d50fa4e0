"""Metric formulas (SPEC §3) against independent implementations on the same rows.

Each test builds StoredEvents from generated rows, sums their contributions into one hour
bin with ``add_into`` and reads the metrics back; the expected values come from
scikit-learn, scipy or numpy over the *rows*, never from ``state.bins``/``state.metrics``.

Tolerances: ratios of exact counts agree to 1e-12; sums kept in fixed point (``SCALE``
units per 1.0, rounded once per event) agree to rel 1e-9, with an absolute floor of one
fixed-point unit; AUC from the ``SCORE_BINS``-cell score histograms agrees to 1e-3 (and
exactly when no two distinct scores share a cell).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy.spatial.distance import jensenshannon
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    precision_score,
    r2_score,
    recall_score,
    roc_auc_score,
    root_mean_squared_error,
)

from driftline.state import exact_json
from driftline.state.baseline import profile_baseline
from driftline.state.bins import (
    HOUR_MS,
    SCALE,
    SCORE_BINS,
    ContributionRules,
    Counters,
    add_into,
)
from driftline.state.events import StoredEvent
from driftline.state.metrics import bin_metrics, drift, js_distance, performance, psi
from driftline.state.spec import ColumnType, ModelSpec, Task

HOUR0 = 1_700_000_000_000 // HOUR_MS * HOUR_MS  # start of an hour: every event in one bin
EXACT = 1e-12  # ratios of exact integer counts
FIXED = 1 / SCALE  # one fixed-point unit: the resolution of every float sum
CITIES = ("lyon", "nice", "paris")

BINARY = ModelSpec(
    project_id="p",
    model_id="binary",
    inputs=("x", "city"),
    outputs=("score",),
    targets=("label",),
    task=Task.BINARY_CLASSIFICATION,
    column_types={"x": ColumnType.FLOAT, "city": ColumnType.CATEGORY, "score": ColumnType.FLOAT},
)
# Spec order deliberately not alphabetical: scikit-learn orders probability columns by label.
CLASSES = ("b", "c", "a")
MULTICLASS = ModelSpec(
    project_id="p",
    model_id="multi",
    inputs=("x",),
    outputs=("p_b", "p_c", "p_a"),
    targets=("label",),
    task=Task.MULTICLASS_CLASSIFICATION,
    classes=CLASSES,
    column_types={"x": ColumnType.FLOAT},
)
REGRESSION = ModelSpec(
    project_id="p",
    model_id="reg",
    inputs=("x",),
    outputs=("pred",),
    targets=("y",),
    task=Task.REGRESSION,
    column_types={"x": ColumnType.FLOAT, "pred": ColumnType.FLOAT},
)


def _baseline_rows(seed: int, n: int = 2000) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet([1.0, 1.0, 1.0], n)
    return [
        {
            "x": float(rng.normal()),
            "city": str(rng.choice(CITIES, p=[0.5, 0.3, 0.2])),
            "score": float(rng.uniform()),
            "p_b": float(probabilities[i, 0]),
            "p_c": float(probabilities[i, 1]),
            "p_a": float(probabilities[i, 2]),
            "pred": float(rng.normal(5, 3)),
        }
        for i in range(n)
    ]


BASELINE_ROWS = _baseline_rows(seed=7)
BASELINES = {
    spec.key: profile_baseline(spec, BASELINE_ROWS) for spec in (BINARY, MULTICLASS, REGRESSION)
}


def with_threshold(threshold: float) -> ModelSpec:
    return replace(BINARY, threshold=threshold)


def events_of(rows: Sequence[Mapping[str, Any]]) -> list[StoredEvent]:
    """One event per row, all in the hour starting at HOUR0, ingest delay 1000 + 7 * i ms."""
    return [
        StoredEvent(f"e{i}", HOUR0 + i, dict(row), HOUR0 + i + 1000 + 7 * i, i)
        for i, row in enumerate(rows)
    ]


def bin_of(spec: ModelSpec, rows: Sequence[Mapping[str, Any]]) -> Counters:
    return bin_of_events(spec, events_of(rows))


def bin_of_events(spec: ModelSpec, events: Iterable[StoredEvent]) -> Counters:
    rules = ContributionRules(spec, BASELINES[spec.key])
    counters: Counters = {}
    for event in events:
        add_into(counters, rules.of(event))
    return counters


def kept_events(rows: Sequence[Mapping[str, Any]], keep: Sequence[bool]) -> list[StoredEvent]:
    return [e for e, k in zip(events_of(rows), keep, strict=True) if k]


def metrics_of(spec: ModelSpec, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return bin_metrics(spec, BASELINES[spec.key], bin_of(spec, rows))


def approx_fixed(expected: float) -> Any:
    """A float sum kept in fixed point: rel 1e-9, or one fixed-point unit near zero."""
    return pytest.approx(expected, rel=1e-9, abs=FIXED)


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def is_real(value: Any) -> bool:
    """A number of a float column: int or finite float, not bool."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------------------------------
# Binary classification


def binary_rows(
    rng: np.random.Generator, n: int, threshold: float, distribution: str
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    scores = rng.uniform(0, 1, n) if distribution == "uniform" else rng.beta(5, 2, n)
    labels = (rng.random(n) < 0.1 + 0.8 * scores).astype(np.int64)
    # The edges: scores exactly 0, 1 and at the threshold, with both labels; a positive
    # scored 0 and a negative scored 1 are the clipped (1 - eps) log-loss terms.
    scores[:8] = [0.0, 0.0, 1.0, 1.0, threshold, threshold, threshold, 0.5]
    labels[:8] = [0, 1, 1, 0, 1, 0, 0, 1]
    return scores, labels


def binary_table(
    scores: Iterable[Any], labels: Iterable[Any], xs: Iterable[float] | None = None
) -> list[dict[str, Any]]:
    xs = xs if xs is not None else (0.1 * i for i in itertools.count())
    return [
        {"x": float(x), "city": CITIES[i % 3], "score": s, "label": y}
        for i, (s, y, x) in enumerate(zip(scores, labels, xs, strict=False))
    ]


def assert_ratio(
    perf: Mapping[str, float], name: str, denominator: int, expected: Callable[[], float]
) -> None:
    """``perf[name]`` is scikit-learn's value when the ratio has cases, else absent."""
    if denominator == 0:
        assert name not in perf, f"{name} has no denominator, yet is {perf.get(name)}"
    else:
        assert perf[name] == pytest.approx(expected(), abs=EXACT), name


def assert_binary_matches_sklearn(
    spec: ModelSpec, counters: Counters, scores: Sequence[float], labels: Sequence[int]
) -> None:
    y_true = np.asarray(labels, dtype=np.int64)
    y_score = np.asarray(scores, dtype=np.float64)
    y_pred = (y_score >= spec.threshold).astype(np.int64)
    tn, fp, fn, tp = (int(c) for c in confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel())
    got = tuple(counters.get(k, 0) for k in ("tp", "fp", "tn", "fn"))
    assert got == (tp, fp, tn, fn)
    assert counters.get("perf_n", 0) == len(y_true)

    perf = performance(spec, counters)
    assert perf is not None
    assert perf["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=EXACT)
    # A ratio whose denominator is zero is absent (SPEC §3); scikit-learn's answer there
    # is its zero_division value, so it is compared only where it is a real ratio.
    assert_ratio(perf, "precision", tp + fp, lambda: precision_score(y_true, y_pred))
    assert_ratio(perf, "recall", tp + fn, lambda: recall_score(y_true, y_pred))
    assert_ratio(perf, "f1", tp + fp + fn, lambda: f1_score(y_true, y_pred))
    # scikit-learn has no FPR: 1 - specificity, the recall of the negative class.
    assert_ratio(perf, "false_positive_rate", fp + tn,
                 lambda: 1 - recall_score(y_true, y_pred, pos_label=0))  # fmt: skip
    assert perf["log_loss"] == approx_fixed(log_loss(y_true, y_score, labels=[0, 1]))
    if len(set(y_true.tolist())) < 2:
        assert "auc" not in perf  # undefined with one class, as roc_auc_score refuses it
    else:
        assert "auc" in perf


@pytest.mark.parametrize("threshold", [0.5, 0.3])
@pytest.mark.parametrize("distribution", ["uniform", "beta(5,2)"])
@pytest.mark.parametrize("seed", [1, 2])
def test_binary_metrics_match_sklearn(threshold: float, distribution: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores, labels = binary_rows(rng, 1500, threshold, distribution)
    spec = with_threshold(threshold)
    counters = bin_of(spec, binary_table(scores.tolist(), labels.tolist(), rng.normal(size=1500)))

    assert_binary_matches_sklearn(spec, counters, scores.tolist(), labels.tolist())
    perf = performance(spec, counters)
    assert perf is not None
    assert perf["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-3)


def test_binary_scores_at_the_threshold_are_predicted_positive() -> None:
    spec = with_threshold(0.3)
    counters = bin_of(spec, binary_table([0.3, 0.3, 0.2999999999, 0.0, 1.0], [1, 0, 1, 0, 1]))
    assert {k: counters.get(k, 0) for k in ("tp", "fp", "tn", "fn")} == {
        "tp": 2, "fp": 1, "tn": 1, "fn": 1,
    }  # fmt: skip


# One distinct score per histogram cell (0.0 and 1.0 alone in the outer cells, 0.5 alone
# in its cell): the histogram Mann-Whitney must then equal roc_auc_score exactly.
cell_scores = st.one_of(
    st.sampled_from([0.0, 1.0, 0.5]),
    st.integers(1, SCORE_BINS - 2)
    .filter(lambda k: k != SCORE_BINS // 2)
    .map(lambda k: (k + 0.5) / SCORE_BINS),
)


@given(
    st.lists(st.tuples(cell_scores, st.integers(0, 1)), min_size=1, max_size=60),
    st.sampled_from([0.5, 0.3]),
)
def test_binary_metrics_match_sklearn_on_any_rows(
    rows: list[tuple[float, int]], threshold: float
) -> None:
    spec = with_threshold(threshold)
    scores = [s for s, _ in rows]
    labels = [y for _, y in rows]
    counters = bin_of(spec, binary_table(scores, labels))

    assert_binary_matches_sklearn(spec, counters, scores, labels)
    perf = performance(spec, counters)
    assert perf is not None
    if "auc" in perf:
        assert perf["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=EXACT)


# Scores on either side of both thresholds, none sharing a histogram cell with another.
LOW_SCORES = st.sampled_from([0.0, 0.05, 0.1005, 0.2995])
HIGH_SCORES = st.sampled_from([0.5, 0.6005, 0.9995, 1.0])


@given(
    st.sampled_from([(0,), (1,), (0, 1)]),
    st.sampled_from(["low", "high", "both"]),
    st.integers(1, 30),
    st.sampled_from([0.5, 0.3]),
    st.data(),
)
def test_binary_metrics_without_a_denominator_are_absent(
    classes: tuple[int, ...], side: str, n: int, threshold: float, data: Any
) -> None:
    """Bins of one class, or with every prediction on one side: the zero denominators."""
    scores_of = {"low": LOW_SCORES, "high": HIGH_SCORES,
                 "both": st.one_of(LOW_SCORES, HIGH_SCORES)}[side]  # fmt: skip
    rows = data.draw(st.lists(st.tuples(scores_of, st.sampled_from(classes)),
                              min_size=n, max_size=n))  # fmt: skip
    spec = with_threshold(threshold)
    scores, labels = [s for s, _ in rows], [y for _, y in rows]
    counters = bin_of(spec, binary_table(scores, labels))
    assert_binary_matches_sklearn(spec, counters, scores, labels)


@pytest.mark.parametrize(
    ("scores", "labels", "absent"),
    [
        ([0.9, 0.2, 0.7], [1, 1, 1], {"false_positive_rate", "auc"}),  # no labelled negative
        ([0.9, 0.2, 0.7], [0, 0, 0], {"recall", "auc"}),  # no labelled positive
        ([0.1, 0.2, 0.3], [1, 0, 1], {"precision"}),  # nothing predicted positive
        ([0.1, 0.2, 0.3], [0, 0, 0], {"precision", "recall", "f1", "auc"}),  # all true negatives
    ],
)
def test_binary_zero_denominators_are_absent_not_zero(
    scores: list[float], labels: list[int], absent: set[str]
) -> None:
    perf = performance(BINARY, bin_of(BINARY, binary_table(scores, labels)))
    assert perf is not None
    every = {"accuracy", "precision", "recall", "f1", "false_positive_rate", "auc", "log_loss"}
    assert set(perf) == every - absent
    with warnings.catch_warnings():  # scikit-learn would answer 0 here, and warn
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        y_pred = [int(s >= 0.5) for s in scores]
        assert {"precision", "recall", "f1"} & absent == {
            name for name, score in (("precision", precision_score), ("recall", recall_score),
                                     ("f1", f1_score)) if _warns(score, labels, y_pred)
        }  # fmt: skip


def _warns(score: Callable[..., float], y_true: list[int], y_pred: list[int]) -> bool:
    """Whether scikit-learn finds the metric ill-defined (its denominator is zero)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedMetricWarning)
        score(y_true, y_pred)
    return any(issubclass(w.category, UndefinedMetricWarning) for w in caught)


def test_performance_counts_only_events_with_output_and_target() -> None:
    rng = np.random.default_rng(11)
    n = 800
    rows: list[dict[str, Any]] = []
    for i in range(n):
        score: Any = float(rng.uniform())
        label: Any = int(rng.random() < score)
        kind = rng.random()
        if kind < 0.15:
            label = None
        elif kind < 0.20:
            label = math.nan
        elif kind < 0.28:
            score = None
        elif kind < 0.31:
            score = math.nan
        elif kind < 0.36:
            score = "high"  # non-numeric output: a type mismatch, not a prediction
        elif kind < 0.38:
            score, label = None, None
        rows.append({"x": float(rng.normal()), "city": CITIES[i % 3], "score": score,
                     "label": label})  # fmt: skip

    metrics = metrics_of(BINARY, rows)
    profile = BASELINES[BINARY.key].columns["score"]
    assert profile.minimum is not None
    assert profile.maximum is not None
    labelled = [r for r in rows if not is_missing(r["label"])]
    scored = [r for r in labelled if is_real(r["score"])]
    assert metrics["traffic"] == {
        "events": n,
        "labelled": len(labelled),
        "mean_ingest_delay_ms": pytest.approx(float(np.mean([1000 + 7 * i for i in range(n)]))),
    }
    assert metrics["integrity"]["score"] == {
        "missing": sum(is_missing(r["score"]) for r in rows),
        "type_mismatch": sum(isinstance(r["score"], str) for r in rows),
        "range_violation": sum(
            is_real(r["score"]) and not profile.minimum <= r["score"] <= profile.maximum
            for r in rows
        ),
    }
    assert 0 < len(scored) < len(labelled) < n
    assert_binary_matches_sklearn(
        BINARY, bin_of(BINARY, rows), [r["score"] for r in scored], [r["label"] for r in scored]
    )
    perf = metrics["performance"]
    y_true = [r["label"] for r in scored]
    y_score = [r["score"] for r in scored]
    assert perf["accuracy"] == pytest.approx(
        accuracy_score(y_true, [int(s >= 0.5) for s in y_score]), abs=EXACT
    )
    assert perf["auc"] == pytest.approx(roc_auc_score(y_true, y_score), abs=1e-3)


def test_no_labelled_event_means_no_performance_key() -> None:
    unlabelled = binary_table([0.2, 0.7, 0.9], [None, None, None])
    metrics = metrics_of(BINARY, unlabelled)
    assert "performance" not in metrics
    assert metrics["traffic"]["events"] == 3
    assert metrics["traffic"]["labelled"] == 0

    labelled_without_output = binary_table([None, "high", math.nan], [1, 0, 1])
    metrics = metrics_of(BINARY, labelled_without_output)
    assert "performance" not in metrics
    assert metrics["traffic"]["labelled"] == 3

    for spec, row in (
        (MULTICLASS, {"x": 0.0, "p_b": 0.2, "p_c": 0.3, "p_a": 0.5, "label": None}),
        (REGRESSION, {"x": 0.0, "pred": 1.5, "y": None}),
    ):
        assert "performance" not in metrics_of(spec, [row])


# ---------------------------------------------------------------------------------------
# Multiclass classification


def multiclass_rows(
    rng: np.random.Generator, n: int, *, absent: str | None = None, never_true: str | None = None
) -> list[dict[str, Any]]:
    """Probabilities in spec order (b, c, a), rows normalised to sum 1; truth ~ softmax."""
    logits = rng.normal(0, 1.5, size=(n, 3))
    if absent is not None:
        logits[:, CLASSES.index(absent)] = -30.0  # never the argmax, never drawn as truth
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    truth_logits = logits + rng.gumbel(size=(n, 3))
    for name in (absent, never_true):
        if name is not None:
            truth_logits[:, CLASSES.index(name)] = -np.inf
    truth = truth_logits.argmax(axis=1)
    rows = [
        {"x": float(rng.normal()), "p_b": float(p[0]), "p_c": float(p[1]), "p_a": float(p[2]),
         "label": CLASSES[int(t)]}
        for p, t in zip(probabilities, truth, strict=True)
    ]  # fmt: skip
    if absent is None and never_true is None:
        # A confident wrong prediction: the true class has probability exactly 0 (clipped).
        rows[0].update({"p_b": 1.0, "p_c": 0.0, "p_a": 0.0, "label": "c"})
    return rows


def assert_multiclass_matches_sklearn(
    counters: Counters, rows: Sequence[Mapping[str, Any]]
) -> None:
    scored = [r for r in rows if r["label"] in CLASSES]
    assert counters.get("perf_n", 0) == len(scored)
    proba = np.array([[r[name] for name in MULTICLASS.outputs] for r in scored])
    y_true = [r["label"] for r in scored]
    y_pred = [CLASSES[int(k)] for k in proba.argmax(axis=1)]
    sorted_columns = np.argsort(CLASSES)  # scikit-learn's probability columns: sorted labels

    perf = performance(MULTICLASS, counters)
    assert perf is not None
    assert perf["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=EXACT)
    # scikit-learn's defaults (labels=None, zero_division="warn"): it averages over the
    # classes in y_true or y_pred, each of which has an F1 denominator, so it never warns.
    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        assert perf["macro_f1"] == pytest.approx(
            f1_score(y_true, y_pred, average="macro"), abs=EXACT
        )
        assert perf["weighted_f1"] == pytest.approx(
            f1_score(y_true, y_pred, average="weighted"), abs=EXACT
        )
    with warnings.catch_warnings():  # rows that do not sum to one are used as given
        warnings.filterwarnings("ignore", "The y_prob values do not sum to one")
        expected_loss = log_loss(y_true, proba[:, sorted_columns], labels=sorted(CLASSES))
    assert perf["log_loss"] == approx_fixed(expected_loss)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_multiclass_metrics_match_sklearn(seed: int) -> None:
    rows = multiclass_rows(np.random.default_rng(seed), 1200)
    rows[1]["label"] = "z"  # not a class: labelled, but no performance contribution
    counters = bin_of(MULTICLASS, rows)
    assert counters["bad_class"] == 1
    assert counters["labelled"] == len(rows)
    assert_multiclass_matches_sklearn(counters, rows)


def test_multiclass_macro_f1_averages_over_labels_present_in_truth_or_prediction() -> None:
    """scikit-learn with ``labels=None`` averages over the union of y_true and y_pred."""
    rows = multiclass_rows(np.random.default_rng(6), 500, absent="a")
    assert all(r["label"] != "a" for r in rows)
    assert all(max(r["p_b"], r["p_c"]) > r["p_a"] for r in rows)
    counters = bin_of(MULTICLASS, rows)
    assert_multiclass_matches_sklearn(counters, rows)

    perf = performance(MULTICLASS, counters)
    assert perf is not None
    y_true = [r["label"] for r in rows]
    y_pred = [("b", "c")[int(r["p_c"] > r["p_b"])] for r in rows]
    all_classes = f1_score(y_true, y_pred, labels=list(CLASSES), average="macro", zero_division=0)
    assert perf["macro_f1"] != pytest.approx(all_classes)  # the absent class is not a 0


def test_multiclass_class_predicted_but_never_true_counts_in_macro_f1() -> None:
    rows = multiclass_rows(np.random.default_rng(8), 500, never_true="a")
    assert all(r["label"] != "a" for r in rows)
    assert any(r["p_a"] > max(r["p_b"], r["p_c"]) for r in rows)
    assert_multiclass_matches_sklearn(bin_of(MULTICLASS, rows), rows)


def test_multiclass_log_loss_uses_rows_as_given_like_sklearn() -> None:
    """Rows that do not sum to one are not divided by their sum: scikit-learn (1.5 and
    later) uses them as given, clipped to [eps, 1 - eps]."""
    rng = np.random.default_rng(21)
    rows = multiclass_rows(rng, 300)
    for row in rows[:100]:
        for name in MULTICLASS.outputs:
            row[name] = row[name] * 0.5  # rows summing to 1/2
    rows[100].update({"p_b": 0.0, "p_c": 0.0, "p_a": 0.0, "label": "a"})  # clipped to eps
    rows[101].update({"p_b": 1.0, "p_c": 1.0, "p_a": 1.0, "label": "b"})  # clipped to 1 - eps
    assert_multiclass_matches_sklearn(bin_of(MULTICLASS, rows), rows)


unit = st.integers(0, 1000).map(lambda k: k / 1000)


@given(st.lists(st.tuples(st.sampled_from(CLASSES), unit, unit, unit), min_size=1, max_size=40))
def test_multiclass_metrics_match_sklearn_on_any_rows(
    drawn: list[tuple[str, float, float, float]],
) -> None:
    """Random labels and scores in [0, 1] (rows not normalised, ties broken to the first
    class in spec order as argmax does): few classes, absent ones, one class."""
    rows = [{"x": 0.0, "p_b": b, "p_c": c, "p_a": a, "label": label}
            for label, b, c, a in drawn]  # fmt: skip
    assert_multiclass_matches_sklearn(bin_of(MULTICLASS, rows), rows)


# ---------------------------------------------------------------------------------------
# Regression


def assert_regression_matches_sklearn(counters: Counters, y: Sequence[float],
                                      pred: Sequence[float]) -> None:  # fmt: skip
    assert counters.get("perf_n", 0) == len(y)
    perf = performance(REGRESSION, counters)
    assert perf is not None
    assert perf["mae"] == approx_fixed(mean_absolute_error(y, pred))
    assert perf["mse"] == approx_fixed(mean_squared_error(y, pred))
    assert perf["rmse"] == approx_fixed(root_mean_squared_error(y, pred))
    if len(set(y)) > 1:
        assert perf["r2"] == approx_fixed(r2_score(y, pred))
    else:  # one event, or a constant target: no total variance to explain
        assert "r2" not in perf
    assert perf["mape"] == approx_fixed(mean_absolute_percentage_error(y, pred))


def regression_table(y: Iterable[Any], pred: Iterable[Any]) -> list[dict[str, Any]]:
    return [{"x": 0.0, "pred": p, "y": t} for t, p in zip(y, pred, strict=True)]


@pytest.mark.parametrize("seed", [9, 10])
def test_regression_metrics_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.normal(5, 3, 1000)
    pred = y + rng.normal(0, 1, 1000)
    counters = bin_of(REGRESSION, regression_table(y.tolist(), pred.tolist()))
    assert_regression_matches_sklearn(counters, y.tolist(), pred.tolist())


def test_regression_metrics_with_targets_at_and_near_zero() -> None:
    rng = np.random.default_rng(12)
    y = rng.normal(0, 1, 300)
    y[:6] = [0.0, 0.0, 1e-9, -1e-12, 3e-7, -0.0]
    pred = y + rng.normal(0, 0.5, 300)
    pred[1] = 0.0  # y == pred == 0: a zero percentage error, not 0 / eps noise
    counters = bin_of(REGRESSION, regression_table(y.tolist(), pred.tolist()))
    perf = performance(REGRESSION, counters)
    assert perf is not None
    assert perf["mape"] > 1e12  # y == 0 divides by eps, as scikit-learn does
    assert_regression_matches_sklearn(counters, y.tolist(), pred.tolist())


@pytest.mark.parametrize("pred", [[2.5, 2.5, 2.5, 2.5], [2.5, 3.0, 2.0, 2.5]])
def test_regression_r2_of_a_constant_target_is_absent(pred: list[float]) -> None:
    """scikit-learn's force_finite answers 1.0 / 0.0 here; SPEC §3: no denominator, no R²."""
    y = [2.5] * 4
    counters = bin_of(REGRESSION, regression_table(y, pred))
    assert r2_score(y, pred) in (1.0, 0.0)  # force_finite's stand-ins, not measurements
    perf = performance(REGRESSION, counters)
    assert perf is not None
    assert "r2" not in perf
    assert perf["mse"] == approx_fixed(mean_squared_error(y, pred))  # the rest is there


@pytest.mark.parametrize("pred", [3.0, 4.0])
def test_regression_r2_of_a_single_event_is_absent(pred: float) -> None:
    perf = performance(REGRESSION, bin_of(REGRESSION, regression_table([3.0], [pred])))
    assert perf is not None
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(r2_score([3.0], [pred]))
    assert "r2" not in perf
    assert perf["mae"] == approx_fixed(abs(pred - 3.0))


# Multiples of 1/1000 are exact in fixed point: the code's sums are then exact rationals.
milli = st.integers(-(10**6), 10**6).map(lambda k: k / 1000)


@given(st.lists(st.tuples(milli, milli), min_size=1, max_size=40))
def test_regression_metrics_match_sklearn_on_any_rows(rows: list[tuple[float, float]]) -> None:
    y = [t for t, _ in rows]
    pred = [p for _, p in rows]
    counters = bin_of(REGRESSION, regression_table(y, pred))
    perf = performance(REGRESSION, counters)
    assert perf is not None
    assert perf["mae"] == approx_fixed(mean_absolute_error(y, pred))
    assert perf["mse"] == approx_fixed(mean_squared_error(y, pred))
    assert perf["mape"] == approx_fixed(mean_absolute_percentage_error(y, pred))
    if len(set(y)) > 1:
        assert perf["r2"] == approx_fixed(r2_score(y, pred))
    else:  # one event or a constant target (scikit-learn: nan, or 1.0 / 0.0 by convention)
        assert "r2" not in perf


def test_regression_rows_without_a_numeric_output_or_target_are_not_scored() -> None:
    rows = regression_table([1.0, 2.0, None, 4.0, "n/a", 6.0, 7.0], [1.5, None, 3.0, "x", 5.0,
                                                                     6.5, 6.0])  # fmt: skip
    metrics = metrics_of(REGRESSION, rows)
    assert metrics["traffic"]["events"] == 7
    assert metrics["traffic"]["labelled"] == 6  # "n/a" is a present, non-numeric target
    assert_regression_matches_sklearn(bin_of(REGRESSION, rows), [1.0, 6.0, 7.0], [1.5, 6.5, 6.0])


@pytest.mark.parametrize(("y", "pred"), [([1.0, 2.0], [1e300, 2.0]), ([1e300, 2.0], [1.0, 2.0])])
def test_regression_values_too_large_for_fixed_point_are_left_out_of_performance(
    y: list[float], pred: list[float]
) -> None:
    """|value| * SCALE would overflow a float: such a row counts as traffic, not performance."""
    counters = bin_of(REGRESSION, regression_table(y, pred))
    assert counters["n"] == len(y)
    usable = [(t, p) for t, p in zip(y, pred, strict=True) if max(abs(t), abs(p)) < 1e290]
    assert counters.get("perf_n", 0) == len(usable)
    perf = performance(REGRESSION, counters)
    if usable:
        assert perf is not None
        expected = mean_absolute_percentage_error([t for t, _ in usable], [p for _, p in usable])
        assert perf["mape"] == pytest.approx(expected, rel=1e-9)


def test_regression_bin_counters_survive_the_encoding_of_bin_shares() -> None:
    """Sums of squares in fixed point pass 2**64; the counter encoding must keep them exact."""
    rng = np.random.default_rng(13)
    y = rng.normal(5, 3, 50)
    counters = bin_of(REGRESSION, regression_table(y.tolist(), (y + 1).tolist()))
    assert max(counters.values()) > 2**64
    assert exact_json.loads_tagged(exact_json.dumps_tagged(counters)) == counters
    assert exact_json.loads(exact_json.dumps({"counts": counters})) == {"counts": counters}


# ---------------------------------------------------------------------------------------
# Drift and integrity


def smoothed(counts: NDArray[np.int64]) -> NDArray[np.float64]:
    plus_one: NDArray[np.float64] = counts.astype(np.float64) + 1.0
    return plus_one / float(plus_one.sum())


def expected_psi(p: NDArray[np.float64], q: NDArray[np.float64]) -> float:
    return float(np.sum((p - q) * np.log(p / q)))


def numeric_histogram(edges: Sequence[float], values: Iterable[Any]) -> NDArray[np.int64]:
    typed = np.array([float(v) for v in values if is_real(v)], dtype=np.float64)
    cells = np.searchsorted(np.asarray(edges), typed, side="right")
    return np.bincount(cells, minlength=len(edges) + 1).astype(np.int64)


def category_histogram(categories: Sequence[str], values: Iterable[Any]) -> NDArray[np.int64]:
    counts = Counter(v for v in values if isinstance(v, str))
    known = [counts[c] for c in categories]
    return np.array([*known, sum(counts.values()) - sum(known)], dtype=np.int64)


def production_rows(seed: int, n: int = 1500) -> list[dict[str, Any]]:
    """Shifted values plus nulls, NaNs, wrong types, out-of-range and unseen values."""
    rng = np.random.default_rng(seed)
    odd_x: list[Any] = [None, math.nan, "oops", True, math.inf, 10.0, -10.0, 3]
    odd_city: list[Any] = [None, 7, "rome", "berlin", False]
    odd_score: list[Any] = [None, math.nan, "high", 1.5, -0.25]
    rows = []
    for _ in range(n):
        x: Any = float(rng.normal(0.5, 1.5))
        city: Any = str(rng.choice(CITIES, p=[0.2, 0.3, 0.5]))
        score: Any = float(rng.beta(2, 5))
        if rng.random() < 0.2:
            x = odd_x[rng.integers(len(odd_x))]
        if rng.random() < 0.15:
            city = odd_city[rng.integers(len(odd_city))]
        if rng.random() < 0.1:
            score = odd_score[rng.integers(len(odd_score))]
        rows.append({"x": x, "city": city, "score": score, "label": None})
    return rows


@pytest.mark.parametrize("seed", [14, 15])
def test_drift_matches_scipy_and_numpy(seed: int) -> None:
    baseline = BASELINES[BINARY.key]
    rows = production_rows(seed)
    found = drift(BINARY, baseline, bin_of(BINARY, rows))
    assert set(found) == {"x", "city", "score"}

    for name in ("x", "score"):
        profile = baseline.columns[name]
        reference = numeric_histogram(profile.edges, (r[name] for r in BASELINE_ROWS))
        assert tuple(reference.tolist()) == profile.histogram
        observed = numeric_histogram(profile.edges, (r[name] for r in rows))
        assert_drift(found[name], observed, reference)

    city = baseline.columns["city"]
    assert city.categories == tuple(sorted(CITIES))
    reference = category_histogram(city.categories, (r["city"] for r in BASELINE_ROWS))
    assert tuple(reference.tolist()) == city.histogram
    observed = category_histogram(city.categories, (r["city"] for r in rows))
    assert observed[-1] > 0  # unseen cities land in __other__
    assert_drift(found["city"], observed, reference)


def assert_drift(
    found: Mapping[str, float], observed: NDArray[np.int64], reference: NDArray[np.int64]
) -> None:
    p, q = smoothed(observed), smoothed(reference)
    assert found["js_distance"] == pytest.approx(jensenshannon(p, q, base=2), abs=EXACT)
    assert found["psi"] == pytest.approx(expected_psi(p, q), abs=EXACT)


def test_drift_skips_a_column_without_values_in_the_bin() -> None:
    rows = [{"x": None, "city": 3, "score": 0.5, "label": None}] * 4
    found = drift(BINARY, BASELINES[BINARY.key], bin_of(BINARY, rows))
    assert set(found) == {"score"}


counts = st.lists(st.integers(0, 10_000), min_size=1, max_size=30)


@given(st.data(), counts)
def test_js_distance_and_psi_formulas(data: Any, observed: list[int]) -> None:
    expected = data.draw(st.lists(st.integers(0, 10_000), min_size=len(observed),
                                  max_size=len(observed)))  # fmt: skip
    p = smoothed(np.array(observed, dtype=np.int64))
    q = smoothed(np.array(expected, dtype=np.int64))
    # Squared: near zero, sqrt turns float rounding of the divergence into ~1e-9 noise.
    js = js_distance(observed, expected)
    assert js**2 == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=EXACT)
    assert psi(observed, expected) == pytest.approx(expected_psi(p, q), abs=1e-10, rel=1e-12)


def test_integrity_counts_match_the_rows() -> None:
    baseline = BASELINES[BINARY.key]
    rows = production_rows(16)
    integrity = metrics_of(BINARY, rows)["integrity"]

    for name in ("x", "score"):
        profile = baseline.columns[name]
        assert profile.minimum == min(r[name] for r in BASELINE_ROWS)
        assert profile.maximum == max(r[name] for r in BASELINE_ROWS)
        values = [r[name] for r in rows]
        assert integrity[name] == {
            "missing": sum(is_missing(v) for v in values),
            "type_mismatch": sum(not is_missing(v) and not is_real(v) for v in values),
            "range_violation": sum(
                is_real(v) and not profile.minimum <= v <= profile.maximum for v in values
            ),
        }
    cities = [r["city"] for r in rows]
    assert integrity["city"] == {
        "missing": sum(c is None for c in cities),
        "type_mismatch": sum(c is not None and not isinstance(c, str) for c in cities),
        "range_violation": sum(isinstance(c, str) and c not in CITIES for c in cities),
    }
    for name in ("x", "city", "score"):
        assert all(count > 0 for count in integrity[name].values()), name


# ---------------------------------------------------------------------------------------
# Streaming = batch


def stream(
    spec: ModelSpec, rows: Sequence[Mapping[str, Any]], keep: Sequence[bool],
    late: Sequence[bool], target: str,
) -> Counters:  # fmt: skip
    """Add every event (late-labelled ones first without their target), apply the late
    labels as retract-then-add, then retract the events not kept."""
    rules = ContributionRules(spec, BASELINES[spec.key])
    events = events_of(rows)
    counters: Counters = {}
    first = [
        StoredEvent(e.event_id, e.timestamp_ms, {**e.columns, target: None}, e.ingested_ms, 0)
        if is_late else e
        for e, is_late in zip(events, late, strict=True)
    ]  # fmt: skip
    for event in first:
        add_into(counters, rules.of(event))
    for before, after, is_late in zip(first, events, late, strict=True):
        if is_late:
            add_into(counters, rules.of(before), -1)
            add_into(counters, rules.of(after))
    for event, kept in zip(events, keep, strict=True):
        if not kept:
            add_into(counters, rules.of(event), -1)
    return counters


STREAM_N = 40
# A quarter of the profile's examples: each one runs a dozen scikit-learn metrics.
_profile = settings.default
streaming = settings(max_examples=max((_profile.max_examples if _profile else 200) // 4, 10))


def masks() -> st.SearchStrategy[list[bool]]:
    return st.lists(st.booleans(), min_size=STREAM_N, max_size=STREAM_N)


@streaming
@given(masks(), masks())
def test_streaming_binary_equals_sklearn_on_the_remaining_rows(
    keep: list[bool], late: list[bool]
) -> None:
    rng = np.random.default_rng(17)
    scores, labels = binary_rows(rng, STREAM_N, 0.5, "uniform")
    rows = binary_table(scores.tolist(), labels.tolist())
    counters = stream(BINARY, rows, keep, late, "label")
    assert counters == bin_of_events(BINARY, kept_events(rows, keep))

    kept = [i for i in range(STREAM_N) if keep[i]]
    if not kept:
        assert counters == {}
        assert performance(BINARY, counters) is None
        return
    assert_binary_matches_sklearn(BINARY, counters, scores[kept].tolist(), labels[kept].tolist())
    perf = performance(BINARY, counters)
    assert perf is not None
    if "auc" in perf:
        assert perf["auc"] == pytest.approx(roc_auc_score(labels[kept], scores[kept]), abs=1e-3)


@streaming
@given(masks(), masks())
def test_streaming_multiclass_equals_sklearn_on_the_remaining_rows(
    keep: list[bool], late: list[bool]
) -> None:
    rows = multiclass_rows(np.random.default_rng(18), STREAM_N)
    counters = stream(MULTICLASS, rows, keep, late, "label")
    remaining = [r for r, k in zip(rows, keep, strict=True) if k]
    assert counters == bin_of_events(MULTICLASS, kept_events(rows, keep))
    if remaining:
        assert_multiclass_matches_sklearn(counters, remaining)
    else:
        assert performance(MULTICLASS, counters) is None


@streaming
@given(masks(), masks())
def test_streaming_regression_equals_sklearn_on_the_remaining_rows(
    keep: list[bool], late: list[bool]
) -> None:
    rng = np.random.default_rng(19)
    y = rng.normal(5, 3, STREAM_N)
    pred = y + rng.normal(0, 1, STREAM_N)
    rows = regression_table(y.tolist(), pred.tolist())
    counters = stream(REGRESSION, rows, keep, late, "y")
    kept = [i for i in range(STREAM_N) if keep[i]]
    assert counters == bin_of_events(REGRESSION, kept_events(rows, keep))
    if kept:
        assert_regression_matches_sklearn(counters, y[kept].tolist(), pred[kept].tolist())
    else:
        assert performance(REGRESSION, counters) is None


def test_retracting_every_labelled_event_removes_the_performance_key() -> None:
    rows = binary_table([0.1, 0.8, 0.6], [0, 1, None])
    rules = ContributionRules(BINARY, BASELINES[BINARY.key])
    events = events_of(rows)
    counters: Counters = {}
    for event in events:
        add_into(counters, rules.of(event))
    assert "performance" in bin_metrics(BINARY, BASELINES[BINARY.key], counters)
    for event in events[:2]:
        add_into(counters, rules.of(event), -1)
    metrics = bin_metrics(BINARY, BASELINES[BINARY.key], counters)
    assert "performance" not in metrics
    assert metrics["traffic"]["events"] == 1
    assert metrics["traffic"]["labelled"] == 0
