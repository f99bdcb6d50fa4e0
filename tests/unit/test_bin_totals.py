"""The bins stage's rules (``state.bin_totals``): deltas fold into their share once each,
newest share wins, shares sum into a bin, emissions are coalesced."""

from __future__ import annotations

from random import Random

from hypothesis import given
from hypothesis import strategies as st

from driftline.state.bin_totals import (
    EmissionBudget,
    EmissionTimes,
    Share,
    bin_total,
    changed_shares,
    folded,
    newest_shares,
    supersedes,
)
from driftline.state.bins import Counters

counters = st.dictionaries(
    st.sampled_from(["n", "labelled", "tp", "h:age:3", "sq_err"]),
    st.integers(-(2**80), 2**80).filter(bool),
    max_size=5,
)
shares = st.builds(Share, st.integers(0, 50), counters)
# (ingest partition, share) pairs: a batch of snapshots of one bin.
snapshots = st.lists(st.tuples(st.integers(0, 3), shares), max_size=12)
stored_shares = st.dictionaries(st.integers(0, 3), shares)


def applied(stored: dict[int, Share], batch: list[tuple[int, Share]]) -> dict[int, Share]:
    """The stored shares after a batch: what the bins processor does with the store."""
    newest = newest_shares(batch)
    found = [stored.get(key) for key in newest]
    return {**stored, **changed_shares(newest, found)}


def test_a_share_supersedes_only_an_older_one() -> None:
    assert supersedes(Share(5, {}), None)
    assert supersedes(Share(5, {}), Share(4, {"n": 1}))
    assert not supersedes(Share(5, {"n": 2}), Share(5, {"n": 1}))  # the same, redelivered
    assert not supersedes(Share(4, {"n": 2}), Share(5, {"n": 1}))


@given(stored_shares, snapshots)
def test_each_partition_keeps_its_newest_share(
    stored: dict[int, Share], batch: list[tuple[int, Share]]
) -> None:
    """Against a rule written out independently: the highest version wins, the stored
    share on a tie, else the batch's first of that version."""
    after = applied(stored, batch)
    for partition in {p for p, _ in batch} | set(stored):
        candidates = [share for p, share in batch if p == partition]
        if partition in stored:
            candidates.insert(0, stored[partition])
        newest = max(share.version for share in candidates)
        assert after[partition] == next(s for s in candidates if s.version == newest)


@given(stored_shares, snapshots, st.randoms())
def test_newest_share_wins_is_idempotent_and_ignores_order_and_repeats(
    stored: dict[int, Share], batch: list[tuple[int, Share]], random: Random
) -> None:
    once = applied(stored, batch)
    assert applied(once, batch) == once  # the batch delivered again changes nothing
    for cut in range(len(batch) + 1):  # nor do older snapshots sent after newer ones
        assert applied(applied(stored, batch[:cut]), batch) == once
    shuffled = list(batch)
    random.shuffle(shuffled)
    versions = {(p, s.version) for p, s in batch}
    if len(versions) == len(batch):  # one snapshot per version: order cannot matter
        assert applied(stored, shuffled) == once


@given(st.lists(shares, max_size=8), st.randoms())
def test_summing_shares_is_order_independent_and_exact(parts: list[Share], random: Random) -> None:
    total = bin_total(parts)
    shuffled = list(parts)
    random.shuffle(shuffled)
    assert bin_total(shuffled) == total
    expected: dict[str, int] = {}
    for share in parts:
        for name, count in share.counters.items():
            expected[name] = expected.get(name, 0) + count
    expected = {name: count for name, count in expected.items() if count}
    if expected:
        assert total is not None
        assert total.counters == expected
        assert total.version == sum(share.version for share in parts)
    else:
        assert total is None  # every share empty, or they cancel: a tombstone


def summed(parts: list[Counters]) -> Counters:
    """Counters added up the plain way, zeros left out."""
    total: dict[str, int] = {}
    for part in parts:
        for name, count in part.items():
            total[name] = total.get(name, 0) + count
    return {name: count for name, count in total.items() if count}


# A partition's deltas to one bin: one per batch, versions growing.
delta_streams = st.lists(counters, max_size=10).map(
    lambda changes: [Share(10 * (i + 1), change) for i, change in enumerate(changes)]
)


@given(delta_streams, st.randoms())
def test_deltas_folded_as_they_come_with_repeats_equal_their_sum(
    deltas: list[Share], random: Random
) -> None:
    """Streaming equals batch: the deltas delivered in batches, each batch possibly with
    deltas delivered before (a redelivery), folded at random points (emissions, which is
    what the bins processor stores: a share, the deltas under their versions), end as the
    sum of the distinct deltas, versioned by the newest."""
    share: Share | None = None
    pending: dict[int, Share] = {}
    sent = 0
    while sent < len(deltas):
        batch = deltas[sent : random.randint(sent + 1, len(deltas))]
        repeats = random.sample(deltas[:sent], random.randint(0, sent))
        sent += len(batch)
        for delta in [*batch, *repeats]:
            pending[delta.version] = delta
        if random.random() < 0.5:
            share = folded(share, pending.values()) or share
            pending = {}
    share = folded(share, pending.values()) or share
    if not deltas:
        assert share is None
        return
    assert share is not None
    assert share.version == deltas[-1].version
    assert {n: c for n, c in share.counters.items() if c} == summed([d.counters for d in deltas])


def test_folding_only_deltas_no_newer_than_the_share_changes_nothing() -> None:
    share = Share(20, {"n": 3})
    assert folded(share, [Share(20, {"n": 1}), Share(5, {"n": 9})]) is None
    assert folded(None, []) is None
    assert folded(share, [Share(30, {"n": -3, "tp": 1})]) == Share(30, {"tp": 1})


def test_a_bin_whose_shares_are_all_empty_is_a_tombstone() -> None:
    assert bin_total([Share(3, {}), Share(7, {})]) is None
    assert bin_total([]) is None


def test_a_bin_is_emitted_at_most_once_per_interval() -> None:
    times: EmissionTimes[str] = EmissionTimes(500)
    assert times.take("a", 10_000)
    assert not times.take("a", 10_499)  # within the interval: it waits, dirty
    assert times.take("b", 10_499)  # bins are coalesced one by one
    assert times.take("a", 10_500)
    assert not times.take("a", 10_999)


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 400)), max_size=40),
    st.integers(1, 300),
)
def test_forgetting_old_emissions_changes_no_decision(
    steps: list[tuple[str, int]], interval_ms: int
) -> None:
    """Only emissions older than the interval are forgotten: those no longer hold a bin back."""
    remembering: EmissionTimes[str] = EmissionTimes(interval_ms)
    forgetting: EmissionTimes[str] = EmissionTimes(interval_ms)
    forgetting.REMEMBERED = 0  # type: ignore[misc]
    now_ms = 10_000
    for key, step_ms in steps:
        now_ms += step_ms
        forgetting.forget_old(now_ms)
        assert forgetting.take(key, now_ms) == remembering.take(key, now_ms)


def test_under_a_backlog_emitting_gets_its_share_of_the_time() -> None:
    budget = EmissionBudget(share=0.1, burst_ms=200)
    budget.refill(0, busy=True)
    budget.spend(200)  # the initial burst
    assert not budget.allows()
    budget.refill(500, busy=True)  # 50 ms of credit for 500 ms of input
    assert budget.allows()
    budget.spend(50)
    assert not budget.allows()
    budget.spend(10_000)  # a debt: the threads downstream were busy
    budget.refill(10_500, busy=True)  # 1 s of credit for 10 s
    assert not budget.allows()
    budget.refill(10_501, busy=False)  # no backlog: a whole burst at once, the debt gone
    budget.spend(199)
    assert budget.allows()
    budget.refill(60_000, busy=False)
    budget.spend(200)
    assert not budget.allows()


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 300), st.booleans()), max_size=60))
def test_busy_emitting_never_exceeds_share_of_elapsed_time_plus_one_burst(
    steps: list[tuple[int, int, bool]],
) -> None:
    """Emitting only while ``allows()``, the time spent stays within share x elapsed + burst
    + the one emission that may overrun the credit."""
    budget = EmissionBudget(share=0.2, burst_ms=200)
    now_ms = 0
    budget.refill(now_ms, busy=True)
    spent_ms = 0
    for elapsed_ms, cost_ms, emits in steps:
        now_ms += elapsed_ms
        budget.refill(now_ms, busy=True)
        if emits and budget.allows():
            budget.spend(cost_ms)
            spent_ms += cost_ms
        assert spent_ms <= 0.2 * now_ms + 200 + 300
