"""Merge rules of SPEC §2, checked against a plain-Python model written from the spec."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from driftline.state.commands import Command, Delete, Insert, Update, event_key
from driftline.state.deletions import DeletionRecord, DeletionState, range_registered, range_step
from driftline.state.events import (
    BatchMerge,
    StoredEvent,
    expire_parked,
)
from driftline.state.spec import ModelSpec
from tests.support.event_tables import DictStore, merged
from tests.support.reference_model import ReferenceEvents

SPEC = ModelSpec(
    project_id="p",
    model_id="m",
    inputs=("age", "city"),
    outputs=("score",),
    targets=("label",),
    decisions=("approved",),
    metadata=("uri", "tag"),
)
MODEL = SPEC.key
PARK_LIMIT = 3


def run(commands: list[Command], store: DictStore | None = None) -> DictStore:
    store = store or DictStore()
    raws = [b'{"raw": %d}' % i for i in range(len(commands))]
    in_batch = [replace(c, ref=i) for i, c in enumerate(commands)]
    merged(in_batch, raws, store, {MODEL: SPEC}, PARK_LIMIT)
    return store


def at_offsets(commands: list[Command]) -> list[Command]:
    """Give commands the offsets they would have as consecutive messages of one partition."""
    return [replace(c, offset=i) for i, c in enumerate(commands)]


# --- the reference model: SPEC §2 read literally ---------------------------------------

KNOWN = {"age", "city", "score", "label", "approved", "uri", "tag"}
UPDATABLE = {"label", "uri", "tag"}  # targets and metadata of SPEC


def reference(commands: list[Command]) -> dict[str, tuple[int, dict[str, Any]]]:
    model = ReferenceEvents(KNOWN, UPDATABLE, PARK_LIMIT)
    for c in commands:
        if isinstance(c, Insert):
            ts = c.timestamp_ms if c.timestamp_ms is not None else c.received_ms
            model.insert(c.event_id, c.columns, ts)
        elif isinstance(c, Update):
            model.update(c.event_id, c.columns, c.timestamp_ms)
        else:
            model.delete(c.event_id)
    return model.events


# --- strategies -------------------------------------------------------------------

ids = st.sampled_from(["a", "b", "c", "d"])
values = st.one_of(st.none(), st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=3))
timestamps = st.one_of(st.none(), st.integers(0, 10**13))
insert_columns = st.dictionaries(st.sampled_from(sorted(KNOWN | {"extra"})), values)
update_columns = st.dictionaries(st.sampled_from(sorted(KNOWN | {"extra"})), values)

received = st.integers(0, 10**13)
inserts = st.builds(Insert, st.just(MODEL), ids, insert_columns, timestamps, received, st.just(0))
updates = st.builds(Update, st.just(MODEL), ids, update_columns, timestamps, received, st.just(0))
deletes = st.builds(Delete, st.just(MODEL), ids, received, st.just(0))
command_lists = st.lists(st.one_of(inserts, updates, deletes), max_size=40).map(at_offsets)


def state_of(store: DictStore) -> dict[str, tuple[int, dict[str, Any]]]:
    return {e.event_id: (e.timestamp_ms, e.columns) for e in store.events.values()}


@given(command_lists)
def test_batch_merge_equals_the_reference_model(commands: list[Command]) -> None:
    assert state_of(run(commands)) == reference(commands)


@given(command_lists, st.data())
def test_batch_boundaries_do_not_change_the_result(commands: list[Command], data: Any) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(0, len(commands)), max_size=6)))
    store = DictStore()
    start = 0
    for cut in [*cuts, len(commands)]:
        run(commands[start:cut], store)
        start = cut
    assert state_of(store) == state_of(run(commands))
    assert store.parked.keys() == run(commands).parked.keys()


@given(command_lists)
def test_every_message_applied_twice_changes_nothing(commands: list[Command]) -> None:
    doubled = [c for command in commands for c in (command, command)]
    assert state_of(run(doubled)) == state_of(run(commands))


@given(command_lists, st.integers(0, 40))
def test_redelivering_a_suffix_changes_nothing(commands: list[Command], restart: int) -> None:
    """At-least-once: after a crash the tail since the last commit is applied again."""
    store = run(commands)
    run(commands[min(restart, len(commands)) :], store)
    assert state_of(store) == state_of(run(commands))


def test_update_changes_only_targets_and_metadata_and_reports_the_rest() -> None:
    insert = Insert(MODEL, "e1", {"age": 30, "score": 0.9, "label": None, "uri": "u"}, 1000, 5, 0)
    update = Update(
        MODEL, "e1", {"label": 1, "age": 99, "score": 0.1, "approved": True}, None, 9, 0
    )
    store = DictStore()
    raws = [b"{}", b"{}"]
    outcome = merged(
        at_offsets([insert, replace(update, ref=1)]), raws, store, {MODEL: SPEC}, PARK_LIMIT
    )
    stored = store.events[event_key(MODEL, "e1")]
    assert stored.columns == {"age": 30, "score": 0.9, "label": 1, "uri": "u"}
    assert stored.timestamp_ms == 1000
    assert stored.ingested_ms == 5
    assert dict(outcome.dropped_fields) == {
        (MODEL, "age"): 1,
        (MODEL, "score"): 1,
        (MODEL, "approved"): 1,
    }


def test_explicit_null_clears_and_omitted_fields_stay() -> None:
    store = run([Insert(MODEL, "e1", {"label": 1, "uri": "u", "tag": "t"}, 10, 10, 0)])
    run([Update(MODEL, "e1", {"label": None}, None, 11, 1)], store)
    assert store.events[event_key(MODEL, "e1")].columns == {"label": None, "uri": "u", "tag": "t"}


def test_update_with_timestamp_moves_the_event_and_reports_both_states() -> None:
    store = run([Insert(MODEL, "e1", {"age": 1}, 3_600_000, 10, 0)])
    outcome = merged([Update(MODEL, "e1", {}, 7_200_000, 11, 1)], [b"{}"], store, {MODEL: SPEC}, 3)
    (change,) = outcome.changes
    assert change.before is not None
    assert change.after is not None
    assert (change.before.timestamp_ms, change.after.timestamp_ms) == (3_600_000, 7_200_000)


def test_reinserting_a_labelled_event_replaces_it_label_included() -> None:
    """What SCHEMAS.md promises a producer that re-sends an insert (a retry, a backfill):
    the new insert is the whole event; a label given by an update is gone unless resent,
    and without event_timestamp the event takes the new message's Kafka timestamp."""
    key = event_key(MODEL, "e1")
    store = run([Insert(MODEL, "e1", {"age": 30, "label": None, "uri": "u"}, 1000, 5, 0)])
    run([Update(MODEL, "e1", {"label": 1}, None, 6, 1)], store)
    assert store.events[key].columns == {"age": 30, "label": 1, "uri": "u"}

    outcome = merged(
        [Insert(MODEL, "e1", {"age": 31, "label": None}, None, 9_000, 2)],
        [b"{}"], store, {MODEL: SPEC}, PARK_LIMIT,
    )  # fmt: skip
    (change,) = outcome.changes
    assert change.before is not None
    assert change.before.columns["label"] == 1  # retracted from its bin
    replaced = store.events[key]
    assert replaced.columns == {"age": 31, "label": None}
    assert replaced.timestamp_ms == 9_000


def test_update_before_insert_waits_then_applies_in_order() -> None:
    store = run(
        [
            Update(MODEL, "e1", {"label": 0}, None, 1, 0),
            Update(MODEL, "e1", {"label": 1, "uri": "x"}, None, 2, 1),
        ]
    )
    key = event_key(MODEL, "e1")
    assert key not in store.events
    assert [p.update.columns for p in store.parked[key]] == [{"label": 0}, {"label": 1, "uri": "x"}]
    run([Insert(MODEL, "e1", {"age": 4, "label": None}, 100, 3, 2)], store)
    assert store.events[key].columns == {"age": 4, "label": 1, "uri": "x"}
    assert key not in store.parked


def test_parked_updates_beyond_the_limit_are_rejected_with_a_reason() -> None:
    commands: list[Command] = [Update(MODEL, "e1", {"label": i}, None, i, 0) for i in range(5)]
    numbered = [replace(c, ref=i) for i, c in enumerate(at_offsets(commands))]
    outcome = merged(numbered, [b"{}"] * 5, DictStore(), {MODEL: SPEC}, PARK_LIMIT)
    assert [r.ref for r in outcome.rejections] == [3, 4]
    assert "already 3 updates wait" in outcome.rejections[0].reason


def test_parked_updates_expire_after_the_timeout() -> None:
    store = run([Update(MODEL, "e1", {"label": 0}, None, 1_000, 0)])
    store = run([Update(MODEL, "e1", {"label": 1}, None, 5_000, 1)], store)
    key = event_key(MODEL, "e1")
    kept, expired = expire_parked(key, store.parked[key], now_ms=6_000, timeout_ms=2_000)
    assert [p.update.received_ms for p in kept] == [5_000]
    assert [e.parked.update.received_ms for e in expired] == [1_000]
    assert expired[0].parked.raw_value == b'{"raw": 0}'


def test_delete_removes_event_and_its_waiting_updates() -> None:
    store = run(
        [Insert(MODEL, "e1", {"age": 1}, 10, 10, 0), Update(MODEL, "e2", {"label": 1}, None, 11, 1)]
    )
    outcome = merged(
        [
            Delete(MODEL, "e1", 12, 2),
            Delete(MODEL, "e2", 12, 3, 1),
            Delete(MODEL, "nope", 12, 4, 2),
        ],
        [b"{}"] * 3,
        store,
        {MODEL: SPEC},
        3,
    )
    assert store.events == {}
    assert store.parked == {}
    # update_metrics defaults to false (SPEC §2): the bins keep the event's contribution.
    assert outcome.changes == []


def test_a_delete_with_update_metrics_retracts_the_event_and_counts_for_its_request() -> None:
    store = run([Insert(MODEL, "e1", {"age": 1}, 10, 10, 0)])
    outcome = merged(
        [Delete(MODEL, "e1", 12, 1, 0, True, "d1"), Delete(MODEL, "e1", 12, 2, 1, True, "d1")],
        [b"{}"] * 2,
        store,
        {MODEL: SPEC},
        3,
    )
    assert [(c.before is not None, c.after) for c in outcome.changes] == [(True, None)]
    assert outcome.deleted == {"d1": 1}
    assert list(outcome.previous) == [event_key(MODEL, "e1")]  # the one key written
    assert store.events == {}


def test_unknown_model_is_rejected() -> None:
    store = DictStore()
    outcome = merged([Insert("p/other", "e1", {}, None, 1, 0)], [b"{}"], store, {MODEL: SPEC}, 3)
    assert outcome.previous == {}
    assert store.events == {}
    assert outcome.rejections[0].reason == "model 'p/other' is not registered"


def test_stored_event_round_trips_through_its_dict() -> None:
    event = StoredEvent("e", 1, {"a": [1, 2], "b": None}, 2, 3)
    assert StoredEvent.from_dict(event.to_dict()) == event


# --- time-range deletion steps (state.deletions) ----------------------------------------


def stored_at(*timestamps: int) -> DictStore:
    """Events e0, e1, ... of MODEL at these times."""
    return run([Insert(MODEL, f"e{i}", {}, ts, 1, i) for i, ts in enumerate(timestamps)])


def keys(*event_ids: str) -> list[str]:
    return [event_key(MODEL, event_id) for event_id in event_ids]


def test_a_range_step_deletes_up_to_its_grant_from_start_inclusive_to_end_exclusive() -> None:
    store = stored_at(99, 100, 150, 199, 200)
    record = range_registered(MODEL, 100, 200, True, offset=7)
    merge = BatchMerge(store, {MODEL: SPEC}, PARK_LIMIT)
    candidates = keys("e0", "missing", "e1", "e2", "e3", "e4")
    step = range_step(merge, "d1", record, day=3, budget=2, candidates=candidates)
    assert (step.deleted, step.record.deleted, step.record.state) == (2, 2, "running")
    assert not step.left_grant_unused
    assert sorted(store.events) == keys("e0", "e3", "e4")
    assert merge.outcome.deleted == {"d1": 2}
    assert len(merge.outcome.changes) == 2  # update_metrics: retracted from the bins

    last = range_step(merge, "d1", step.record, day=3, budget=5, candidates=candidates)
    assert (last.deleted, last.record.deleted, last.record.state) == (1, 3, "done")
    assert last.left_grant_unused
    assert sorted(store.events) == keys("e0", "e4")


def test_a_range_step_without_a_grant_deletes_nothing_and_says_why() -> None:
    store = stored_at(150)
    record = range_registered(MODEL, 100, 200, False, offset=7)
    merge = BatchMerge(store, {MODEL: SPEC}, PARK_LIMIT)
    deferred = range_step(merge, "d1", record, day=3, budget=None, candidates=keys("e0"))
    assert (deferred.deleted, deferred.record.deferred, deferred.record.state) == (
        None, True, DeletionState.RUNNING,
    )  # fmt: skip
    capped = range_step(merge, "d1", record, day=3, budget=0, candidates=keys("e0"))
    assert (capped.deleted, capped.record.state, capped.record.capped_day) == (
        None, DeletionState.WAITING_FOR_DAILY_CAP, 3,
    )  # fmt: skip
    assert sorted(store.events) == keys("e0")


def test_a_deletion_record_round_trips_and_its_state_is_the_api_word() -> None:
    record = replace(range_registered(MODEL, 1, 2, True, 3), state=DeletionState.DONE)
    raw = orjson.dumps(record.to_dict())
    assert b'"state":"done"' in raw
    assert DeletionRecord.from_dict(orjson.loads(raw)) == record
    assert type(DeletionRecord.from_dict(orjson.loads(raw)).state) is DeletionState
