"""Bin accumulators: subtractable exactly, and streaming equals a batch recomputation."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from driftline.state import exact_json
from driftline.state.baseline import profile_baseline, profile_column
from driftline.state.bins import (
    HOUR_MS,
    BinKey,
    ColumnRule,
    ContributionRules,
    Counters,
    add_into,
    batch_deltas,
    bins_of,
    hour_of,
)
from driftline.state.commands import Command, Delete, Insert, Update
from driftline.state.events import EventChange, MergeOutcome, StoredEvent
from driftline.state.spec import ColumnType, ModelSpec, Task
from tests.support.event_tables import DictStore, merged

BINARY = ModelSpec(
    project_id="p",
    model_id="bin",
    inputs=("age", "city"),
    outputs=("score",),
    targets=("label",),
    metadata=("uri",),
    task=Task.BINARY_CLASSIFICATION,
    column_types={"age": ColumnType.INT, "city": ColumnType.CATEGORY, "score": ColumnType.FLOAT},
)
REGRESSION = replace(
    BINARY,
    model_id="reg",
    task=Task.REGRESSION,
    column_types={**BINARY.column_types, "label": ColumnType.FLOAT},
)
MULTICLASS = ModelSpec(
    project_id="p",
    model_id="multi",
    inputs=("age",),
    outputs=("pa", "pb", "pc"),
    targets=("label",),
    task=Task.MULTICLASS_CLASSIFICATION,
    classes=("a", "b", "c"),
    column_types={"age": ColumnType.INT},
)
BASELINE_ROWS = [
    {"age": 20 + i % 50, "city": ["paris", "lyon", "nice"][i % 3], "score": (i % 97) / 97,
     "pa": 0.2, "pb": 0.3, "pc": 0.5}
    for i in range(300)
]  # fmt: skip
RULES = {
    spec.key: ContributionRules(spec, profile_baseline(spec, BASELINE_ROWS))
    for spec in (BINARY, REGRESSION, MULTICLASS)
}
SPECS = {spec.key: spec for spec in (BINARY, REGRESSION, MULTICLASS)}

maybe = st.one_of  # readability below
ages = maybe(
    st.none(), st.integers(0, 120), st.just("old"), st.floats(allow_nan=True), st.booleans()
)
cities = maybe(
    st.none(), st.sampled_from(["paris", "lyon", "nice", "rome"]), st.integers(0, 3), st.booleans()
)
scores = maybe(st.none(), st.floats(0, 1), st.just(1.0), st.just(0.0), st.just("high"))
labels = maybe(
    st.none(), st.integers(0, 1), st.floats(-100, 100), st.sampled_from(["a", "b", "c", "z"])
)
event_columns = st.fixed_dictionaries(
    {"age": ages, "city": cities, "score": scores, "label": labels,
     "pa": st.floats(0, 1), "pb": st.floats(0, 1), "pc": st.floats(0.01, 1)},
    optional={"uri": st.text(max_size=3)},
)  # fmt: skip
stored_events = st.builds(
    StoredEvent,
    st.just("e"),
    st.integers(0, 5 * HOUR_MS),
    event_columns,
    st.integers(0, 6 * HOUR_MS),
    st.just(0),
)


@given(st.sampled_from(sorted(RULES)), st.lists(stored_events, max_size=10), stored_events)
def test_adding_then_retracting_an_event_is_the_identity(
    model: str, background: list[StoredEvent], event: StoredEvent
) -> None:
    rules = RULES[model]
    bin_: Counters = {}
    for other in background:
        add_into(bin_, rules.of(other))
    before = dict(bin_)
    add_into(bin_, rules.of(event))
    add_into(bin_, rules.of(event), -1)
    assert bin_ == before


@given(st.sampled_from(sorted(RULES)), stored_events)
def test_an_event_alone_makes_a_bin_that_retracts_to_nothing(
    model: str, event: StoredEvent
) -> None:
    bin_: Counters = {}
    add_into(bin_, RULES[model].of(event))
    assert bin_["n"] == 1
    add_into(bin_, RULES[model].of(event), -1)
    assert bin_ == {}


ids = st.sampled_from(["a", "b", "c", "d", "e"])
timestamps = st.one_of(st.none(), st.integers(0, 4 * HOUR_MS))
update_columns = st.dictionaries(st.sampled_from(["label", "uri", "age", "score"]), labels)
commands = st.one_of(
    st.builds(Insert, st.sampled_from(sorted(RULES)), ids, event_columns, timestamps,
              st.integers(0, 4 * HOUR_MS), st.just(0)),
    st.builds(Update, st.sampled_from(sorted(RULES)), ids, update_columns, timestamps,
              st.integers(0, 4 * HOUR_MS), st.just(0)),
    st.builds(Delete, st.sampled_from(sorted(RULES)), ids, st.integers(0, 4 * HOUR_MS), st.just(0),
              st.just(0), st.booleans()),
)  # fmt: skip


def merged_in_batches(
    sequence: list[Command], data: Any
) -> tuple[list[MergeOutcome], list[tuple[str, StoredEvent]]]:
    """The sequence merged in randomly cut batches: each batch's outcome, and the events
    the bins must hold at the end (the stored ones, and those deleted without retraction)."""
    sequence = [replace(c, offset=i) for i, c in enumerate(sequence)]
    cuts = sorted(data.draw(st.sets(st.integers(0, len(sequence)), max_size=5)))
    store = DictStore()
    outcomes = []
    start = 0
    for cut in [*cuts, len(sequence)]:
        batch = [replace(c, ref=i) for i, c in enumerate(sequence[start:cut])]
        outcome = merged(batch, [b"{}"] * len(batch), store, SPECS, 10)
        outcomes.append(outcome)
        start = cut
    final = [(key.rsplit("/", 1)[0], event) for key, event in store.events.items()]
    return outcomes, final + kept_by_deletes(sequence)


def changes_one_by_one(outcome: MergeOutcome) -> dict[BinKey, Counters]:
    """The batch's bin deltas computed event by event (``ContributionRules.of``, not the
    batch path): each change retracts its old version from its old hour and adds its new
    version to its new hour, a late label as much as any other change."""
    summed: dict[BinKey, Counters] = {}
    for change in outcome.changes:
        rules, model = RULES[change.model_key], change.model_key
        if change.before is not None:
            before_bin = summed.setdefault((model, hour_of(change.before.timestamp_ms)), {})
            add_into(before_bin, rules.of(change.before), -1)
        if change.after is not None:
            after_bin = summed.setdefault((model, hour_of(change.after.timestamp_ms)), {})
            add_into(after_bin, rules.of(change.after))
    return summed


def non_empty(bins: dict[BinKey, Counters]) -> dict[BinKey, Counters]:
    return {key: counters for key, counters in bins.items() if counters}


@given(st.lists(commands, max_size=60), st.data())
def test_streaming_bins_equal_a_batch_recomputation_from_the_final_events(
    sequence: list[Command], data: Any
) -> None:
    """Inserts, labels, metadata updates, moves, re-inserts and deletes, in random batches."""
    outcomes, final = merged_in_batches(sequence, data)
    streamed: dict[BinKey, Counters] = {}
    for outcome in outcomes:
        for key, delta in changes_one_by_one(outcome).items():
            add_into(streamed.setdefault(key, {}), delta)
    assert non_empty(streamed) == bins_of(RULES, final)


def kept_by_deletes(sequence: list[Command]) -> list[tuple[str, StoredEvent]]:
    """Events deleted with update_metrics=False, as they were: the bins keep them (SPEC §2)."""
    store = DictStore()
    kept = []
    for command in sequence:
        before = dict(store.events)
        merged([replace(command, ref=0)], [b"{}"], store, SPECS, 10)
        if isinstance(command, Delete) and not command.update_metrics:
            key = f"{command.model_key}/{command.event_id}"
            if key in before and key not in store.events:
                kept.append((command.model_key, before[key]))
    return kept


@given(st.lists(commands, max_size=60), st.data())
def test_batch_deltas_equal_the_changes_deltas_summed_and_a_batch_recomputation(
    sequence: list[Command], data: Any
) -> None:
    """The merge agent's path (``batch_deltas``): each batch's changes counted together,
    column by column, equal to counting them one event at a time and, summed over the
    batches, to a batch recomputation."""
    outcomes, final = merged_in_batches(sequence, data)
    streamed: dict[BinKey, Counters] = {}
    for outcome in outcomes:
        together: dict[BinKey, Counters] = {}
        for model in RULES:
            changes = [change for change in outcome.changes if change.model_key == model]
            together.update(batch_deltas(RULES[model], model, changes))
        assert together == non_empty(changes_one_by_one(outcome))
        for key, delta in together.items():
            add_into(streamed.setdefault(key, {}), delta)
    assert non_empty(streamed) == bins_of(RULES, final)


# The counters that depend on the target (the schema in ``state/bins.py``).
LABEL_COUNTERS = ("labelled", "perf_n", "tp", "fp", "tn", "fn", "ll", "s1:", "s0:", "cm:",
                  "bad_class", "err", "abs_err", "sq_err", "y", "y2", "ape")  # fmt: skip


@given(st.sampled_from(sorted(RULES)), stored_events, labels)
def test_a_late_label_changes_only_the_label_counters_of_its_bin(
    model: str, event: StoredEvent, label: Any
) -> None:
    """Its inputs, outputs and time are as they were: their counters cancel exactly."""
    labelled = replace(event, columns={**event.columns, "label": label})
    delta = batch_deltas(RULES[model], model, [EventChange(model, event, labelled)])
    expected: Counters = {}
    add_into(expected, RULES[model].of(labelled))
    add_into(expected, RULES[model].of(event), -1)
    assert delta == ({(model, hour_of(event.timestamp_ms)): expected} if expected else {})
    assert all(name.startswith(LABEL_COUNTERS) for name in expected)


COLUMN_PROFILES = [
    profile_column("n_int", ColumnType.INT, [i % 37 for i in range(200)]),
    profile_column("n_float", ColumnType.FLOAT, [i / 7 - 3 for i in range(200)]),
    profile_column("flag", ColumnType.BOOL, [i % 3 == 0 for i in range(200)]),
    profile_column("cat", ColumnType.CATEGORY, [f"c{i % 5}" for i in range(200)]),
    profile_column("text", ColumnType.STR, [f"t{i}" for i in range(200)]),
    profile_column("empty", ColumnType.FLOAT, [None] * 10),
]
json_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.integers(10**300, 10**400).map(lambda i: i * (1 if i % 2 else -1)),
    st.floats(allow_infinity=False),
    st.sampled_from([0.0, 3.0, 2.5, -1e300, 1e300]),
    st.text(max_size=4),
    st.sampled_from(["c0", "c4", "c9", "t3", "True", "False"]),
    st.lists(st.integers(), max_size=2),
)


@given(st.sampled_from(COLUMN_PROFILES), json_values)
def test_the_compiled_column_rule_decides_as_the_profile_does(profile: Any, value: Any) -> None:
    counted: Counters = {}
    ColumnRule(profile.name, profile).count(counted, value)
    expected: Counters = {}
    if value is None or (isinstance(value, float) and value != value):
        expected[f"miss:{profile.name}"] = 1
    elif not profile.type_matches(value):
        expected[f"type:{profile.name}"] = 1
    else:
        expected[f"h:{profile.name}:{profile.bin_of(value)}"] = 1
        if profile.out_of_range(value):
            expected[f"range:{profile.name}"] = 1
    assert counted == expected


plain_numbers = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.integers(10**300, 10**400),  # beyond float64 once large enough
    st.floats(),
    st.sampled_from([0.0, -0.0, 3.0, 2.5, 1e300, float("inf"), float("nan"), 2**53 + 1]),
)


@given(
    st.sampled_from(COLUMN_PROFILES),
    st.lists(st.tuples(st.one_of(plain_numbers, json_values), st.integers(0, 2),
                       st.sampled_from([-1, 1])), max_size=30),
    st.booleans(),
)  # fmt: skip
def test_counting_a_column_at_once_equals_counting_it_value_by_value(
    profile: Any, rows: list[tuple[Any, int, int]], plain_only: bool
) -> None:
    """The array path (plain numbers and None) and the per-value path for any other batch."""
    if plain_only:
        rows = [(v, s, g) for v, s, g in rows if type(v) in (int, float, type(None))]
    rule = ColumnRule(profile.name, profile)
    expected: list[Counters] = [{}, {}, {}]
    for value, slot, sign in rows:
        single: Counters = {}
        rule.count(single, value)
        add_into(expected[slot], single, sign)
    counted: list[Counters] = [{}, {}, {}]
    rule.count_many(
        [value for value, _, _ in rows],
        np.array([slot for _, slot, _ in rows], dtype=np.intp),
        np.array([sign for _, _, sign in rows], dtype=np.float64),
        counted,
    )
    assert [{k: v for k, v in c.items() if v} for c in counted] == expected


@given(st.dictionaries(st.text(max_size=5), st.integers(-(2**80), 2**80), max_size=8))
def test_counters_survive_their_encodings_exactly_at_any_size(counters: Counters) -> None:
    assert exact_json.loads_tagged(exact_json.dumps_tagged(counters)) == counters
    assert exact_json.loads(exact_json.dumps(counters)) == counters
