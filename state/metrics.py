"""Metric formulas (SPEC §3) computed from a bin's counters (schema in ``state.bins``).

Everything is derived from sums, so a metric is as exact as its bin: after any sequence
of late labels and deletions it equals the same formula over the bin's final events.
Performance metrics are absent, not zero, when the bin has no event with both an output
and a target; and one metric is absent (its key left out) when its denominator is zero
(SPEC §3): a 0 would read as "the model never raises a false alarm" where the bin simply
holds no negative to judge it by, and an alert on a low value would fire on it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from driftline.state.baseline import BaselineProfile, ColumnProfile
from driftline.state.bins import SCALE, SCORE_BINS
from driftline.state.spec import ModelSpec, Task

Counters = Mapping[str, int]


def bin_metrics(
    spec: ModelSpec, baseline: BaselineProfile | None, counters: Counters
) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "traffic": traffic(counters),
        "integrity": integrity(spec, counters),
    }
    if baseline is not None:
        metrics["drift"] = drift(spec, baseline, counters)
    performance_metrics = performance(spec, counters)
    if performance_metrics is not None:
        metrics["performance"] = performance_metrics
    return metrics


def traffic(counters: Counters) -> dict[str, Any]:
    events = counters.get("n", 0)
    return {
        "events": events,
        "labelled": counters.get("labelled", 0),
        "mean_ingest_delay_ms": counters.get("delay_ms", 0) / events if events else None,
    }


def integrity(spec: ModelSpec, counters: Counters) -> dict[str, dict[str, int]]:
    return {
        name: {
            "missing": counters.get(f"miss:{name}", 0),
            "type_mismatch": counters.get(f"type:{name}", 0),
            "range_violation": counters.get(f"range:{name}", 0),
        }
        for name in (*spec.inputs, *spec.outputs)
    }


def drift(
    spec: ModelSpec, baseline: BaselineProfile, counters: Counters
) -> dict[str, dict[str, float]]:
    """Per column with values in the bin: JS distance (base 2) and PSI, both +1-smoothed."""
    found: dict[str, dict[str, float]] = {}
    for name in (*spec.inputs, *spec.outputs):
        profile = baseline.columns.get(name)
        if profile is None:
            continue
        observed = production_histogram(profile, counters)
        if sum(observed) == 0:
            continue
        expected = list(profile.histogram)
        found[name] = {
            "js_distance": js_distance(observed, expected),
            "psi": psi(observed, expected),
        }
    return found


def production_histogram(profile: ColumnProfile, counters: Counters) -> list[int]:
    return [counters.get(f"h:{profile.name}:{i}", 0) for i in range(profile.bin_count)]


def _smoothed(counts: list[int]) -> list[float]:
    total = sum(counts) + len(counts)
    return [(c + 1) / total for c in counts]


def js_distance(observed: list[int], expected: list[int]) -> float:
    p, q = _smoothed(observed), _smoothed(expected)
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
    divergence = (_kl2(p, m) + _kl2(q, m)) / 2
    return math.sqrt(max(divergence, 0.0))


def _kl2(p: list[float], q: list[float]) -> float:
    return sum(a * math.log2(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def psi(observed: list[int], expected: list[int]) -> float:
    """Population stability index of production (observed) against the baseline."""
    p, q = _smoothed(observed), _smoothed(expected)
    return sum((a - b) * math.log(a / b) for a, b in zip(p, q, strict=True))


def performance(spec: ModelSpec, counters: Counters) -> dict[str, float] | None:
    n = counters.get("perf_n", 0)
    if n == 0:
        return None
    if spec.task is Task.BINARY_CLASSIFICATION:
        return _binary(counters, n)
    if spec.task is Task.MULTICLASS_CLASSIFICATION:
        return _multiclass(counters, n, len(spec.classes))
    return _regression(counters, n)


def _put_ratio(result: dict[str, float], name: str, numerator: float, denominator: float) -> None:
    """``result[name] = numerator / denominator``, left out when the denominator is zero.

    scikit-learn answers such a ratio with its ``zero_division`` value (0 by default);
    SPEC §3 wants it absent instead, so that "undefined" never looks like a score.
    """
    if denominator:
        result[name] = numerator / denominator


def _binary(counters: Counters, n: int) -> dict[str, float]:
    tp, fp, tn, fn = (counters.get(k, 0) for k in ("tp", "fp", "tn", "fn"))
    result = {
        "accuracy": (tp + tn) / n,
        "log_loss": counters.get("ll", 0) / SCALE / n,
    }
    _put_ratio(result, "precision", tp, tp + fp)  # no predicted positive: absent
    _put_ratio(result, "recall", tp, tp + fn)  # no labelled positive: absent
    _put_ratio(result, "f1", 2 * tp, 2 * tp + fp + fn)  # every event a true negative: absent
    _put_ratio(result, "false_positive_rate", fp, fp + tn)  # no labelled negative: absent
    auc = _auc(counters)
    if auc is not None:
        result["auc"] = auc
    return result


def _auc(counters: Counters) -> float | None:
    """Mann-Whitney over the score histograms; a shared cell counts as half a win.

    Only the cells the bin has are visited (a cell of neither class adds exactly 0.0):
    reading all 2 x 1000 cells was a third of a bin's emission, and a backfill over a year
    of hours emits many bins of few events.
    """
    positives: dict[int, int] = {}
    negatives: dict[int, int] = {}
    for name, count in counters.items():
        cell = _SCORE_CELLS.get(name)
        if cell is not None and count:
            (positives if cell[0] else negatives)[cell[1]] = count
    total_pos, total_neg = sum(positives.values()), sum(negatives.values())
    if total_pos == 0 or total_neg == 0:
        return None  # undefined with one class only
    wins = 0.0
    below = 0
    for index in sorted(positives.keys() | negatives.keys()):
        pos, neg = positives.get(index, 0), negatives.get(index, 0)
        wins += pos * (below + neg / 2)
        below += neg
    return wins / (total_pos * total_neg)


# Score histogram counter name -> (positive class?, cell index).
_SCORE_CELLS = {f"s{label}:{i}": (label == 1, i) for label in (0, 1) for i in range(SCORE_BINS)}


def _multiclass(counters: Counters, n: int, classes: int) -> dict[str, float]:
    """Accuracy, macro and weighted F1 and log loss, as scikit-learn's defaults compute them.

    scikit-learn (``labels=None``) averages F1 over the classes that occur in the labels or
    the predictions: a class the bin never saw is no 0 dragging the macro mean down. Each
    such class has a non-zero F1 denominator (``2 tp + fp + fn`` = its labelled plus its
    predicted events), so ``zero_division`` never comes into play; the weighted mean
    weighs by labelled events, which sum to ``n``.
    """
    matrix = [[counters.get(f"cm:{t}:{p}", 0) for p in range(classes)] for t in range(classes)]
    support = [sum(row) for row in matrix]
    predicted = [sum(matrix[t][p] for t in range(classes)) for p in range(classes)]
    present = [k for k in range(classes) if support[k] + predicted[k] > 0]
    f1 = {k: 2 * matrix[k][k] / (support[k] + predicted[k]) for k in present}
    return {
        "accuracy": sum(matrix[k][k] for k in range(classes)) / n,
        "macro_f1": sum(f1.values()) / len(present),
        "weighted_f1": sum(f1[k] * support[k] for k in present) / n,
        "log_loss": counters.get("ll", 0) / SCALE / n,
    }


def _regression(counters: Counters, n: int) -> dict[str, float]:
    sq_err = counters.get("sq_err", 0)
    y, y2 = counters.get("y", 0), counters.get("y2", 0)
    mse = sq_err / SCALE**2 / n
    result = {
        "mae": counters.get("abs_err", 0) / SCALE / n,
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mape": counters.get("ape", 0) / SCALE / n,
    }
    r2 = _r2(n, sq_err, y, y2)
    if r2 is not None:
        result["r2"] = r2
    return result


def _r2(n: int, sq_err: int, y: int, y2: int) -> float | None:
    """1 - SSE / SST, or None when SST is zero: one event, or every target the same.

    scikit-learn answers 1.0 or 0.0 there (``force_finite``), nan for one event; neither
    is a measurement, so SPEC §3 leaves R² out. ``total`` is n times SST, exact in
    integers, so "constant" means equal in fixed point, with no float noise around 0.
    """
    total = n * y2 - y * y
    if n < 2 or total <= 0:
        return None
    return 1 - n * sq_err / total
