"""Stage 2 of the metric bins, as pure rules: which shares and deltas count, what they
sum to, when a changed bin is emitted.

Each ingest partition sends, after each batch, the change the batch made to every bin it
touched: a delta, versioned by the batch's next input offset (``agents/bin_shares.py``).
A rebuild sends a partition's whole share instead, a snapshot, versioned the same way.
The bins stage keeps per (bin, partition) a share, the sum of what it has folded in, and
the deltas not folded yet, each under its version: a delta delivered again lands on its
own key and is counted once. A delta or snapshot no newer than the share it would change
is already in it and changes nothing, so redeliveries and restores leave the bin as it
was. Deltas are folded into their share when the bin is emitted, not per batch: a
backfill over a year of hours touches each bin once per batch, and rewriting its
kilobyte-sized share each time (merge stage, bins stage, both changelogs) made the cost
per event grow with the hours the stream spans. A bin is the sum of its partitions'
shares. Emissions are coalesced: at most one per bin per interval, the rest of the
changes wait as a dirty mark for a later tick. The clock is always passed in
(``now_ms``), never read here.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

from driftline.state import exact_json
from driftline.state.bins import BinKey, Counters, add_into

K = TypeVar("K", bound=Hashable)

# (model, hour, ingest partition): one partition's share of one bin.
ShareKey = tuple[str, int, int]
# (model, hour, ingest partition, version): one partition's delta to one bin, not folded.
DeltaKey = tuple[str, int, int, int]
# The first byte of a share's record (a snapshot, a stored share): a header line before
# the encoded counters, so the version reads without decoding them. A record starting
# otherwise is a JSON object, the format before.
SHARE_FORMAT = b"\x01"
# The first byte of a delta's record, in the same format: the counters are a change.
DELTA_FORMAT = b"\x02"
# The first bytes of a rebuild's records into a new generation (``agents/bin_shares.py``):
# a partition's whole share of a bin, kept aside until the generation is complete; and a
# partition's word that it sent all of its shares.
STAGED_FORMAT = b"\x03"
DONE_FORMAT = b"\x04"
RECORD_FORMATS = (SHARE_FORMAT, DELTA_FORMAT, STAGED_FORMAT, DONE_FORMAT)


class Share:
    """One ingest partition's share of a bin, as of the batch that versioned it.

    ``version``: the next input offset of the batch that produced it; it grows with every
    change. ``counters``: empty when the partition holds nothing of the bin (any more).
    A share read from the wire keeps its counters encoded (``encoded``, tagged JSON) until
    they are read: the bins stage compares snapshots by version and stores them as they
    came, and reads counters only to emit a bin. Decoding and re-encoding every snapshot
    (thousands of kilobyte-sized shares per batch over a year of hours) was most of that
    stage's work.
    """

    __slots__ = ("_counters", "_encoded", "version")

    def __init__(
        self, version: int, counters: Counters | None = None, encoded: bytes | None = None
    ) -> None:
        self.version = version
        self._counters = counters if counters is not None or encoded is not None else {}
        self._encoded = encoded

    @property
    def counters(self) -> Counters:
        if self._counters is None:
            self._counters = exact_json.loads_tagged(self.encoded) or {}
        return self._counters

    @property
    def encoded(self) -> bytes:
        """The counters as tagged JSON (``null`` when empty)."""
        if self._encoded is None:
            self._encoded = exact_json.dumps_tagged(self._counters or None)
        return self._encoded

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Share):
            return NotImplemented
        return self.version == other.version and self.counters == other.counters

    def __hash__(self) -> int:
        return hash(self.version)

    def __repr__(self) -> str:
        return f"Share({self.version}, {self.counters!r})"


def share_record(share: Share, *before: int, kind: bytes = SHARE_FORMAT) -> bytes:
    """A share in the share format: its ``kind`` (one of ``RECORD_FORMATS``), the integers
    ``before`` (a message's ingest partition, ...) and the version in decimal, apart by
    spaces, a newline, then the counters as encoded."""
    header = b" ".join(b"%d" % number for number in (*before, share.version))
    return kind + header + b"\n" + share.encoded


class ShareRecord(NamedTuple):
    kind: bytes
    before: list[int]
    share: Share


def read_share_record(raw: bytes) -> ShareRecord | None:
    """The kind, the integers before the version and the share (its counters decoded when
    read) of a ``share_record``; None for a record of the JSON format before."""
    kind = raw[:1]
    if kind not in RECORD_FORMATS:
        return None
    header, counters = raw[1:].split(b"\n", 1)
    *before, version = (int(number) for number in header.split(b" "))
    return ShareRecord(kind, before, Share(version, encoded=counters))


@dataclass(frozen=True, slots=True)
class BinTotal:
    """A bin summed over its partitions' shares."""

    # The sum of the shares' versions: it grows whenever any share is replaced.
    version: int
    counters: Counters


def bin_of(key: ShareKey) -> BinKey:
    model, hour, _ = key
    return model, hour


def supersedes(share: Share, current: Share | None) -> bool:
    """Newest share wins: a share replaces only an older one of its partition; an equal
    version is the same snapshot delivered again."""
    return current is None or share.version > current.version


def newest_shares(snapshots: Iterable[tuple[K, Share]]) -> dict[K, Share]:
    """Per key, the newest of a batch's snapshots (the first of them on a tie). Consumed
    as they come, so that a superseded snapshot (its counters can be large) is dropped at
    once: keeping a batch's decoded snapshots alive cost the bins stage a tenth."""
    newest: dict[K, Share] = {}
    for key, share in snapshots:
        if supersedes(share, newest.get(key)):
            newest[key] = share
    return newest


def changed_shares(newest: Mapping[K, Share], stored: Sequence[Share | None]) -> dict[K, Share]:
    """The batch's newest shares that replace the stored ones (``stored`` in the order of
    ``newest``): a snapshot no newer than the stored share changes nothing."""
    return {
        key: share
        for (key, share), current in zip(newest.items(), stored, strict=True)
        if supersedes(share, current)
    }


def folded(share: Share | None, deltas: Iterable[Share]) -> Share | None:
    """The share with the deltas newer than it added, versioned by the newest of them;
    None when none is newer (each was folded into it before)."""
    folded_version = -1 if share is None else share.version
    newer = [delta for delta in deltas if delta.version > folded_version]
    if not newer:
        return None
    counters = {} if share is None else dict(share.counters)
    for delta in newer:
        add_into(counters, delta.counters)
    return Share(max(delta.version for delta in newer), counters)


def bin_total(shares: Iterable[Share]) -> BinTotal | None:
    """The bin the shares add up to; None when they are all empty (a tombstone)."""
    counters: Counters = {}
    version = 0
    for share in shares:
        version += share.version
        if share.counters:
            add_into(counters, share.counters)
    return BinTotal(version, counters) if counters else None


class EmissionTimes(Generic[K]):
    """When each bin was last emitted, to emit a bin at most once per ``interval_ms``:
    a burst of changes to one bin then costs one emission (and one Redis write) per
    interval, not one per batch."""

    # Past this many bins remembered, those emitted before the interval are forgotten.
    REMEMBERED = 1000

    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self._emitted_ms: dict[K, int] = {}

    def take(self, key: K, now_ms: int) -> bool:
        """Whether the bin may be emitted at ``now_ms``; if so, it counts as emitted then.
        A bin that may not waits, marked dirty, for a tick past its interval."""
        if now_ms - self._emitted_ms.get(key, 0) < self.interval_ms:
            return False
        self._emitted_ms[key] = now_ms
        return True

    def forget_old(self, now_ms: int) -> None:
        """Past the interval an emission time no longer matters; keep the map small."""
        if len(self._emitted_ms) > self.REMEMBERED:
            cutoff_ms = now_ms - self.interval_ms
            self._emitted_ms = {
                key: emitted_ms
                for key, emitted_ms in self._emitted_ms.items()
                if emitted_ms >= cutoff_ms
            }


class EmissionBudget:
    """How much of the worker's time may go to emitting bins while its input is behind.

    An emission costs far more than the snapshot that causes it: the bin's shares are
    summed and its metrics computed, then it costs a Redis write, a PostgreSQL row and an
    alert evaluation downstream. Live traffic changes a few hours, and every change goes
    out within the interval. A backfill over a year of hours changes thousands of bins per
    batch; emitting each of them after every batch, the stage spent its time re-emitting
    bins the next batch changed again (50,000 events over 7,300 hours: 45 s to converge,
    batches of 9 s). So while a backlog waits (``busy``), emitting and its downstream work
    may take ``share`` of the time; the bins that find no budget stay dirty for a later
    tick; once the backlog is gone, every dirty bin goes out at full speed. Costs and
    times are passed in, in ms.
    """

    def __init__(self, share: float, burst_ms: float) -> None:
        self.share = share
        self.burst_ms = burst_ms
        self._credit_ms = burst_ms
        self._refilled_ms: float | None = None

    def refill(self, now_ms: float, busy: bool) -> None:
        """Credit for the time since the last refill: ``share`` of it while a backlog
        waits (``busy``), never more than ``burst_ms``. Without a backlog, a whole burst at
        once: a debt run up downstream while it lasted does not hold back what follows."""
        if not busy:
            self._credit_ms = self.burst_ms
        elif self._refilled_ms is not None:
            elapsed_ms = max(0.0, now_ms - self._refilled_ms)
            self._credit_ms = min(self._credit_ms + elapsed_ms * self.share, self.burst_ms)
        self._refilled_ms = now_ms

    def allows(self) -> bool:
        return self._credit_ms > 0

    def spend(self, cost_ms: float) -> None:
        self._credit_ms -= cost_ms
