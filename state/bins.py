"""Hourly metric bins as sums of per-event contributions that can be subtracted again.

A bin's accumulator is a sparse map of integer counters. Every event contributes a small
map (one count here, one histogram cell there); a late label, a moved timestamp, a
replaced insert or a delete retracts the event's old contribution and adds its new one.
Because every counter is an integer, including float sums kept in fixed point
(``SCALE`` units per 1.0, rounded once per event), add-then-retract is exactly the
identity and a bin built by any sequence of changes equals the sum over its final events.

Counter names (the accumulator schema, read by ``state.metrics``):

======================  =====================================================
``n``                   events in the bin
``labelled``            events whose target is present
``delay_ms``            sum of ingest delays (arrival minus event time), ms
``miss:<col>``          null values of an input/output column
``type:<col>``          values whose type does not match the column's type
``range:<col>``         values outside the baseline's min/max or categories
``h:<col>:<i>``         values in baseline bin ``i`` of the column (drift)
``perf_n``              events with both output and target (performance denominator)
binary                  ``tp`` ``fp`` ``tn`` ``fn`` at the threshold; ``ll`` log-loss
                        sum (fixed point); ``s1:<i>`` / ``s0:<i>`` score histogram of
                        positives / negatives over ``SCORE_BINS`` cells (AUC)
multiclass              ``cm:<true>:<pred>`` confusion cells (class indexes); ``ll``;
                        ``bad_class`` targets that are not one of the classes
regression              ``err`` ``abs_err`` ``y`` (fixed point), ``sq_err`` ``y2``
                        (fixed point squared), ``ape`` (fixed point) sum of
                        abs error / max(abs y, eps), as scikit-learn's MAPE
======================  =====================================================
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

from driftline.state.baseline import BaselineProfile, ColumnProfile
from driftline.state.events import EventChange, StoredEvent
from driftline.state.spec import ColumnType, ModelSpec, Task
from driftline.state.tables import Codec

HOUR_MS = 3_600_000
SCALE = 10**9
SCORE_BINS = 1000
# scikit-learn clips probabilities to [eps, 1 - eps] with the float64 machine epsilon.
EPS = 2.220446049250313e-16

# Larger values would overflow a float once scaled; they are left out of performance.
_LARGEST = 1e290

Counters = dict[str, int]
BinKey = tuple[str, int]  # (model key, hour number since the epoch)
Slots = npt.NDArray[np.intp]  # per row of a batch: the index of its hour bin in the batch
Signs = npt.NDArray[np.float64]  # per row: +1 adds the event, -1 retracts it

# Value types a numeric column counts as arrays; anything else takes the per-value path.
_PLAIN_NUMBERS = frozenset({float, int, type(None)})


def hour_of(timestamp_ms: int) -> int:
    return timestamp_ms // HOUR_MS


def _encode_bin_key(key: BinKey) -> bytes:
    model, hour = key
    return f"{model}/{hour}".encode()


def _decode_bin_key(raw: bytes) -> BinKey:
    model, hour = raw.decode().rsplit("/", 1)
    return model, int(hour)


# A bin as bytes, ``project/model/<hour>``: the key of the bin-partials and metrics topics
# and of the bins' tables, so one bin is one key from the merge stage to Redis.
BIN_KEY: Codec[BinKey] = Codec(_encode_bin_key, _decode_bin_key)


def fixed(value: float) -> int:
    return round(value * SCALE)


def add_into(target: Counters, delta: Mapping[str, int], sign: int = 1) -> None:
    """``target += sign * delta``, keeping the map sparse (no zero counters)."""
    for name, count in delta.items():
        total = target.get(name, 0) + sign * count
        if total:
            target[name] = total
        else:
            target.pop(name, None)


class ContributionRules:
    """How one model's events turn into counters; built once per model, used per event."""

    def __init__(self, spec: ModelSpec, baseline: BaselineProfile | None) -> None:
        self.spec = spec
        self.baseline = baseline
        profiles = {} if baseline is None else baseline.columns
        self._columns = [
            (name, ColumnRule(name, profiles.get(name))) for name in (*spec.inputs, *spec.outputs)
        ]

    def of(self, event: StoredEvent) -> Counters:
        counters: Counters = {"n": 1, "delay_ms": event.ingested_ms - event.timestamp_ms}
        values = event.columns
        for name, rule in self._columns:
            rule.count(counters, values.get(name))
        self._count_label(counters, values)
        return counters

    def signed_counts(
        self, rows: Sequence[StoredEvent], signs: Sequence[int]
    ) -> dict[int, Counters]:
        """Per hour, the sum of ``sign * of(event)`` over the rows, zeros left in.

        Equal to adding up ``of`` event by event, but each input or output column is counted
        for the whole batch at once (``ColumnRule.count_many``): event by event, the column
        counters were most of the merge agent's bin work on a wide model.
        """
        slot_of: dict[int, int] = {}
        slot_list = [
            slot_of.setdefault(hour_of(event.timestamp_ms), len(slot_of)) for event in rows
        ]
        out: list[Counters] = [{} for _ in slot_of]
        slots: Slots = np.array(slot_list, dtype=np.intp)
        weights: Signs = np.array(signs, dtype=np.float64)
        _tally(out, "n", slots, weights)
        self._count_delays(rows, signs, slot_list, out)
        self._count_labels(rows, signs, slot_list, out)
        columns = [event.columns for event in rows]
        for name, rule in self._columns:
            rule.count_many([values.get(name) for values in columns], slots, weights, out)
        return {hour: out[slot] for hour, slot in slot_of.items()}

    @staticmethod
    def _count_delays(
        rows: Sequence[StoredEvent], signs: Sequence[int], slots: list[int], out: list[Counters]
    ) -> None:
        """Per hour, the signed sum of ingest delays: Python integers, exact at any size."""
        sums = [0] * len(out)
        for event, sign, slot in zip(rows, signs, slots, strict=True):
            sums[slot] += sign * (event.ingested_ms - event.timestamp_ms)
        for counters, total in zip(out, sums, strict=True):
            counters["delay_ms"] = counters.get("delay_ms", 0) + total

    def _count_labels(
        self, rows: Sequence[StoredEvent], signs: Sequence[int], slots: list[int],
        out: list[Counters],
    ) -> None:  # fmt: skip
        """The label part of the rows that have a target; the others are skipped early."""
        if not self.spec.targets:
            return
        target = self.spec.targets[0]
        for event, sign, slot in zip(rows, signs, slots, strict=True):
            if event.columns.get(target) is None:
                continue
            label: Counters = {}
            self._count_label(label, event.columns)
            if label:
                add_into(out[slot], label, sign)

    def _count_label(self, counters: Counters, values: Mapping[str, Any]) -> None:
        target = self._target(values)
        if target is not None:
            counters["labelled"] = 1
            self._performance(counters, values, target)

    def _target(self, values: Mapping[str, Any]) -> Any:
        if not self.spec.targets:
            return None
        value = values.get(self.spec.targets[0])
        return None if _is_null(value) else value

    def _performance(self, counters: Counters, values: Mapping[str, Any], target: Any) -> None:
        outputs: list[float] = []
        for name in self.spec.outputs:
            value = values.get(name)
            if _is_null(value) or not _is_number(value):
                return
            outputs.append(float(value))
        if self.spec.task is Task.BINARY_CLASSIFICATION:
            positive = target == self.spec.positive_class
            _binary(counters, outputs[0], positive, self.spec.threshold)
        elif self.spec.task is Task.MULTICLASS_CLASSIFICATION:
            _multiclass(counters, outputs, target, self.spec.classes)
        elif _is_number(target):
            _regression(counters, outputs[0], float(target))


class ColumnRule:
    """One column's integrity and drift counting, compiled from its baseline profile.

    Decides exactly what ``ColumnProfile.type_matches``, ``bin_of`` and ``out_of_range``
    decide (a test holds them equal), with the counter names built once: the general
    methods cost a third of the merge agent's time on a 20-input model. Values here come
    from JSON, so they are None, bool, int, float, str, list or dict.
    """

    __slots__ = ("_categories", "_edge_array", "_edges", "_hist", "_kind", "_max", "_min",
                 "_miss", "_other", "_range", "_type")  # fmt: skip

    def __init__(self, name: str, profile: ColumnProfile | None) -> None:
        self._miss = f"miss:{name}"
        self._type = f"type:{name}"
        self._range = f"range:{name}"
        self._kind = None if profile is None else profile.kind
        if profile is None:
            return
        self._hist = [f"h:{name}:{i}" for i in range(profile.bin_count)]
        self._edges = profile.edges
        self._edge_array = np.array(profile.edges, dtype=np.float64)
        self._min, self._max = profile.minimum, profile.maximum
        self._categories = {c: i for i, c in enumerate(profile.categories)}
        self._other = len(profile.categories)

    def count(self, counters: Counters, value: Any) -> None:
        if value is None or (type(value) is float and math.isnan(value)):
            counters[self._miss] = 1
            return
        kind = self._kind
        if kind is None:
            return
        if kind is ColumnType.INT or kind is ColumnType.FLOAT:
            self._count_number(counters, value, kind)
        elif kind is ColumnType.BOOL:
            self._count_category(counters, value, type(value) is bool, check_range=True)
        else:
            self._count_category(counters, value, type(value) is str,
                                 check_range=kind is ColumnType.CATEGORY)  # fmt: skip

    def count_many(
        self, values: list[Any], slots: Slots, signs: Signs, out: list[Counters]
    ) -> None:
        """``count`` for a batch: adds ``signs[i] * count(values[i])`` to ``out[slots[i]]``.

        A numeric column whose values are all plain numbers or None (the common case) is
        counted as arrays, the same decisions as ``count`` made by numpy: NaN is missing,
        ``searchsorted(side="right")`` is ``bisect_right``, and float64 conversion is
        Python's ``float()`` (both round correctly). Other columns, or a batch holding any
        other type (a bool, a string), take ``count`` value by value.
        """
        kind = self._kind
        if (kind is ColumnType.INT or kind is ColumnType.FLOAT) and _PLAIN_NUMBERS.issuperset(
            map(type, values)
        ):
            try:
                numbers = np.array(values, dtype=np.float64)
            except OverflowError:
                pass  # an integer beyond float64: ``count`` calls it a type mismatch
            else:
                self._count_numbers(numbers, kind, slots, signs, out)
                return
        for value, slot, sign in zip(values, slots.tolist(), signs.tolist(), strict=True):
            single: Counters = {}
            self.count(single, value)
            add_into(out[slot], single, int(sign))

    def _count_numbers(
        self,
        numbers: npt.NDArray[np.float64],
        kind: ColumnType,
        slots: Slots,
        signs: Signs,
        out: list[Counters],
    ) -> None:
        missing = np.isnan(numbers)
        fits = np.isfinite(numbers)
        if kind is ColumnType.INT:
            fits &= np.floor(numbers) == numbers
        _tally(out, self._miss, slots[missing], signs[missing])
        mismatched = ~(missing | fits)
        if mismatched.any():
            _tally(out, self._type, slots[mismatched], signs[mismatched])
        fitting = numbers[fits]
        if self._min is not None and self._max is not None:
            outside = fits.copy()
            outside[fits] = ~((self._min <= fitting) & (fitting <= self._max))
            _tally(out, self._range, slots[outside], signs[outside])
        bins = np.searchsorted(self._edge_array, fitting, side="right")
        width = len(self._hist)
        cells = np.bincount(slots[fits] * width + bins, signs[fits], len(out) * width)
        nonzero = np.flatnonzero(cells)
        # Plain lists, not numpy scalars: over a year of hours a batch's events fall into
        # as many bins as there are events, and this loop runs once per event and column.
        names = self._hist
        for slot, index, count in zip(
            (nonzero // width).tolist(),
            (nonzero % width).tolist(),
            cells[nonzero].astype(np.int64).tolist(),
            strict=True,
        ):
            counters = out[slot]
            name = names[index]
            counters[name] = counters.get(name, 0) + count

    def _count_number(self, counters: Counters, value: Any, kind: ColumnType) -> None:
        kind_of_value = type(value)
        if kind_of_value is float:
            fits = value.is_integer() if kind is ColumnType.INT else math.isfinite(value)
        else:
            fits = kind_of_value is int
        if not fits:
            counters[self._type] = 1
            return
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float64, as an infinite float would be
            counters[self._type] = 1
            return
        counters[self._hist[bisect_right(self._edges, number)]] = 1
        if (
            self._min is not None
            and self._max is not None
            and not (self._min <= number <= self._max)
        ):
            counters[self._range] = 1

    def _count_category(
        self, counters: Counters, value: Any, fits: bool, check_range: bool
    ) -> None:
        if not fits:
            counters[self._type] = 1
            return
        index = self._categories.get(str(value), self._other)
        counters[self._hist[index]] = 1
        if check_range and self._categories and index == self._other:
            counters[self._range] = 1


def _tally(out: list[Counters], name: str, slots: Slots, signs: Signs) -> None:
    """``out[slot][name] += sign`` for every row, one bincount for the batch.

    The signed sums are float64, exact: they are integers far below 2**53.
    """
    if not slots.size:
        return
    sums = np.bincount(slots, signs, len(out))
    nonzero = np.flatnonzero(sums)
    for slot, count in zip(nonzero.tolist(), sums[nonzero].astype(np.int64).tolist(), strict=True):
        counters = out[slot]
        counters[name] = counters.get(name, 0) + count


def _binary(counters: Counters, score: float, positive: bool, threshold: float) -> None:
    counters["perf_n"] = 1
    predicted = score >= threshold
    cell = ("t" if predicted == positive else "f") + ("p" if predicted else "n")
    counters[cell] = 1
    counters["ll"] = fixed(-math.log(_clipped(score if positive else 1.0 - score)))
    index = min(max(int(score * SCORE_BINS), 0), SCORE_BINS - 1)
    counters[f"{'s1' if positive else 's0'}:{index}"] = 1


def _multiclass(
    counters: Counters, scores: list[float], target: Any, classes: tuple[Any, ...]
) -> None:
    if target not in classes:
        counters["bad_class"] = 1
        return
    counters["perf_n"] = 1
    truth = classes.index(target)
    predicted = max(range(len(scores)), key=scores.__getitem__)
    counters[f"cm:{truth}:{predicted}"] = 1
    counters["ll"] = fixed(-math.log(_clipped(scores[truth])))


def _clipped(probability: float) -> float:
    """The probability as scikit-learn's ``log_loss`` uses it: clipped to [eps, 1 - eps].

    scikit-learn (1.5 and later) uses the given probabilities as they are, without
    dividing a row by its sum (it only warns when rows do not sum to one), so neither
    does this: the same rows give the same log loss here and there.
    """
    return min(max(probability, EPS), 1.0 - EPS)


def _regression(counters: Counters, prediction: float, truth: float) -> None:
    counters["perf_n"] = 1
    error = fixed(prediction) - fixed(truth)
    y = fixed(truth)
    counters["err"] = error
    counters["abs_err"] = abs(error)
    counters["sq_err"] = error * error
    counters["y"] = y
    counters["y2"] = y * y
    counters["ape"] = fixed(abs(prediction - truth) / max(abs(truth), EPS))


def _is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> TypeGuard[int | float]:
    """A finite number small enough to keep in fixed point."""
    # abs() first: math.isfinite raises on an integer beyond float64, and the bound
    # already leaves out infinities and NaN.
    return isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < _LARGEST


def batch_deltas(
    rules: ContributionRules, model: str, changes: Iterable[EventChange]
) -> dict[BinKey, Counters]:
    """What many changes of one model's events do to the bins, summed per hour bin.

    Every change is a retraction of its old version from its old hour and an addition of
    its new version to its new hour (a late label too: its unchanged columns cancel in the
    sum), counted for the batch at once. Bins whose delta sums to nothing are left out.
    """
    rows: list[StoredEvent] = []
    signs: list[int] = []
    for change in changes:
        if change.before is not None:
            rows.append(change.before)
            signs.append(-1)
        if change.after is not None:
            rows.append(change.after)
            signs.append(1)
    if not rows:
        return {}
    deltas: dict[BinKey, Counters] = {}
    for hour, counters in rules.signed_counts(rows, signs).items():
        delta = {name: count for name, count in counters.items() if count}
        if delta:
            deltas[(model, hour)] = delta
    return deltas


def label_arrivals(
    changes: Iterable[EventChange], labels: Mapping[tuple[str, str], int]
) -> dict[BinKey, int]:
    """Per bin, the earliest arrival of a label the changes applied to it.

    ``labels``: per (model, event id), the Kafka timestamp of the batch's first update that
    carried a target. A label changes the bin of its event's time; an update parked for
    its insert is applied by a later batch, which has none of them (no arrival).
    """
    arrivals: dict[BinKey, int] = {}
    if not labels:
        return arrivals
    for change in changes:
        after = change.after
        if after is None:
            continue
        received_ms = labels.get((change.model_key, after.event_id))
        if received_ms is not None:
            key = (change.model_key, hour_of(after.timestamp_ms))
            arrivals[key] = min(received_ms, arrivals.get(key, received_ms))
    return arrivals


def bins_of(
    rules: Mapping[str, ContributionRules], events: Iterable[tuple[str, StoredEvent]]
) -> dict[BinKey, Counters]:
    """Batch recomputation: the bins of a set of (model, event), from scratch."""
    bins: dict[BinKey, Counters] = {}
    for model, event in events:
        add_into(bins.setdefault((model, hour_of(event.timestamp_ms)), {}), rules[model].of(event))
    return {key: counters for key, counters in bins.items() if counters}
