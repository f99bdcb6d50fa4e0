"""Every table of the partition stores, declared once with its key and value codec.

The merge stage's tables live in each ingest partition's store, the bins stage's in
each bin-partials partition's store, the alert evaluator's in each model-bins
partition's store; all are written through a ``PartitionTransaction``
(``state.tables``) and reach the changelog as ``table \\0 key`` records. To add a table:
declare it here, and read and write it through the transaction.
"""

from __future__ import annotations

import orjson

from driftline.state import exact_json
from driftline.state.alerts import ALERT_RECORD, Alert
from driftline.state.bin_totals import (
    DeltaKey,
    Share,
    ShareKey,
    bin_of,
    read_share_record,
    share_record,
)
from driftline.state.bins import BIN_KEY, BinKey, Counters
from driftline.state.counters import ModelCounters
from driftline.state.deletions import DeletionRecord
from driftline.state.events import StoredEvent
from driftline.state.periods import Period
from driftline.state.tables import BYTES, TEXT, Codec, Table

# --- the merge stage (one store per ingest partition) ---------------------------------

# Separates the parts of a composite key; no model key, event id or number holds it.
_SEP = b"\x00"
# Fixed-width decimals sort as numbers: milliseconds until the year 2286, offsets to
# 10^20, hours until the year 2^40 ms or so.
_MS_DIGITS = 13
_OFFSET_DIGITS = 20
_HOUR_DIGITS = 10


def _event_bytes(event: StoredEvent) -> bytes:
    return exact_json.dumps_tagged(event.to_dict())


def _event_of(raw: bytes) -> StoredEvent:
    return StoredEvent.from_dict(exact_json.loads_tagged(raw))


# event key (``project/model/event_id``) -> the stored event
EVENTS: Table[str, StoredEvent] = Table("events", TEXT, Codec(_event_bytes, _event_of))


# An event's waiting updates as the ``parked`` table lists them: (offset, received_ms).
Waiting = tuple[tuple[int, int], ...]


def _waiting_of(raw: bytes) -> Waiting:
    return tuple((offset, received) for offset, received in orjson.loads(raw))


# event key -> which updates wait for its insert (a few bytes each, their count bounded
# by DRIFTLINE_PARKED_UPDATES_PER_EVENT): the merge processor multi-gets it for every
# batch, so it stays small; the updates themselves are in PARKED_UPDATES.
PARKED: Table[str, Waiting] = Table("parked", TEXT, Codec(orjson.dumps, _waiting_of))

# (event key, offset) of a waiting update
UpdateKey = tuple[str, int]


def _update_key_bytes(key: UpdateKey) -> bytes:
    event, offset = key
    return event.encode() + _SEP + str(offset).zfill(_OFFSET_DIGITS).encode()


def _update_key_of(raw: bytes) -> UpdateKey:
    event, offset = raw.rsplit(_SEP, 1)
    return event.decode(), int(offset)


# (event key, offset) -> the waiting update's original message, one record each, so that
# no record grows with the updates an event waits for.
PARKED_UPDATES: Table[UpdateKey, bytes] = Table(
    "parked-updates", Codec(_update_key_bytes, _update_key_of), BYTES
)

# (received_ms, event key, offset) of a waiting update
TimeKey = tuple[int, str, int]


def _time_key_bytes(key: TimeKey) -> bytes:
    received_ms, event, offset = key
    return str(received_ms).zfill(_MS_DIGITS).encode() + _SEP + _update_key_bytes((event, offset))


def _time_key_of(raw: bytes) -> TimeKey:
    received, rest = raw.split(_SEP, 1)
    event, offset = _update_key_of(rest)
    return int(received), event, offset


# (received_ms, event key, offset) -> b"": the tick finds the updates whose wait is over by
# one range scan from the oldest, instead of reading every waiting update every second.
PARKED_BY_TIME: Table[TimeKey, bytes] = Table(
    "parked-by-time", Codec(_time_key_bytes, _time_key_of), BYTES
)

# (model key, hour since the epoch, event id) of an event
HourKey = tuple[str, int, str]


def hour_prefix(model: str, hour: int) -> bytes:
    """The encoded HOURS keys of one model's events in one hour all start with this."""
    return f"{model}\0{hour:0{_HOUR_DIGITS}d}\0".encode()


def _hour_key_bytes(key: HourKey) -> bytes:
    model, hour, event_id = key
    return hour_prefix(model, hour) + event_id.encode()


def _hour_key_of(raw: bytes) -> HourKey:
    model, hour, event_id = raw.split(_SEP, 2)
    return model.decode(), int(hour), event_id.decode()


# (model key, hour, event id) -> b"": the hour index (``state.hour_index``); keys sort by
# model, then hour, then event id, so one hour of one model is one prefix scan.
HOURS: Table[HourKey, bytes] = Table("hours", Codec(_hour_key_bytes, _hour_key_of), BYTES)


def _counters_bytes(counters: ModelCounters) -> bytes:
    return orjson.dumps(counters.to_dict())


def _counters_of(raw: bytes) -> ModelCounters:
    return ModelCounters.from_dict(orjson.loads(raw))


# model key -> the model's service counters in this partition (``state.counters``)
COUNTERS: Table[str, ModelCounters] = Table("counters", TEXT, Codec(_counters_bytes, _counters_of))


def _record_bytes(record: DeletionRecord) -> bytes:
    return orjson.dumps(record.to_dict())


def _record_of(raw: bytes) -> DeletionRecord:
    return DeletionRecord.from_dict(orjson.loads(raw))


# deletion id -> what this partition did of the request (``state.deletions``)
DELETIONS: Table[str, DeletionRecord] = Table("deletions", TEXT, Codec(_record_bytes, _record_of))

# deletion id -> b"": the deletions waiting for a tick (the daily cap, a deferred step);
# the tick reads this small table, not every deletion the partition ever ran.
DELETIONS_WAITING: Table[str, bytes] = Table("deletions-waiting", TEXT, BYTES)

# (model key, UTC day) of a count of deleted events
DayKey = tuple[str, int]


def _day_key_bytes(key: DayKey) -> bytes:
    model, day = key
    return f"{model}\0{day}".encode()


def _day_key_of(raw: bytes) -> DayKey:
    model, _, day = raw.decode().rpartition("\0")
    return model, int(day)


def _count_bytes(count: int) -> bytes:
    return str(count).encode()


# (model key, UTC day) -> events this partition deleted by time range that day: the daily
# cap's exact count; Redis holds a copy that the partition sets (agents.deletion_budget).
DELETED_PER_DAY: Table[DayKey, int] = Table(
    "deleted-per-day", Codec(_day_key_bytes, _day_key_of), Codec(_count_bytes, int)
)


# --- the bins stage (one store per bin-partials partition) ----------------------------

# Stage 1 keeps only which bins each ingest partition has sent a delta of (``partials``,
# in the ingest partition's store, for a rebuild). Stage 2 keeps per bin and ingest
# partition a share and the deltas not folded into it yet, and the bins changed but not
# emitted yet (their emission interval had not passed).


def shares_of(bin_key: BinKey) -> bytes:
    """The prefix of a bin's share keys: ``project/model/<hour>/``."""
    return BIN_KEY.encode(bin_key) + b"/"


def _encode_share_key(key: ShareKey) -> bytes:
    return shares_of(bin_of(key)) + str(key[2]).encode()


def _decode_share_key(raw: bytes) -> ShareKey:
    bin_key, partition = raw.rsplit(b"/", 1)
    model, hour = BIN_KEY.decode(bin_key)
    return model, hour, int(partition)


def _encode_share(share: Share) -> bytes:
    return share_record(share)


def _decode_share(raw: bytes) -> Share:
    """The version read, the counters kept encoded until read (``Share``)."""
    read = read_share_record(raw)
    if read is not None:
        return read.share
    stored = exact_json.loads_tagged(raw)  # older records: JSON, some also with "p"
    return Share(stored["v"], stored["c"] or {})


def _encode_delta_key(key: DeltaKey) -> bytes:
    model, hour, partition, version = key
    return shares_of((model, hour)) + b"%d/%d" % (partition, version)


def _decode_delta_key(raw: bytes) -> DeltaKey:
    bin_key, partition, version = raw.rsplit(b"/", 2)
    model, hour = BIN_KEY.decode(bin_key)
    return model, hour, int(partition), int(version)


# The bins this ingest partition has sent a delta of (only the key matters; records
# written before deltas hold the partition's share, unread): a rebuild sends an empty
# share for those it no longer has an event of.
HELD_BINS: Table[BinKey, bytes] = Table("partials", BIN_KEY, BYTES)
SHARES: Table[ShareKey, Share] = Table(
    "shares",
    Codec(_encode_share_key, _decode_share_key),
    Codec(_encode_share, _decode_share),
)
# The deltas not folded into their share yet, each under its version (a delta delivered
# again overwrites itself); folded and deleted when the bin is emitted.
DELTAS: Table[DeltaKey, Share] = Table(
    "deltas",
    Codec(_encode_delta_key, _decode_delta_key),
    Codec(_encode_share, _decode_share),
)
# A bin waiting for its emission, deleted once emitted; only the key matters.
DIRTY: Table[BinKey, bytes] = Table("dirty", BIN_KEY, BYTES)
MARKED = b""

# A rebuild into a new generation (``driftline replay bins``): per model, the generation
# being built; its shares, kept aside; and which ingest partitions sent all of theirs
# (the version of their rebuild, and how many partitions the generation waits for).
# Once every partition has, the model's shares are swapped for the generation's.
StagedKey = tuple[str, int, int, int]  # (model, generation, hour, ingest partition)
DoneKey = tuple[str, int, int]  # (model, generation, ingest partition)


def generation_prefix(model: str, generation: int) -> bytes:
    """The prefix of a generation's staged shares and done words: ``model/<generation>/``."""
    return f"{model}/{generation}/".encode()


def _encode_staged_key(key: StagedKey) -> bytes:
    model, generation, hour, partition = key
    return generation_prefix(model, generation) + b"%d/%d" % (hour, partition)


def _decode_staged_key(raw: bytes) -> StagedKey:
    model, generation, hour, partition = raw.decode().rsplit("/", 3)
    return model, int(generation), int(hour), int(partition)


def _encode_done_key(key: DoneKey) -> bytes:
    model, generation, partition = key
    return generation_prefix(model, generation) + b"%d" % partition


def _decode_done_key(raw: bytes) -> DoneKey:
    model, generation, partition = raw.decode().rsplit("/", 2)
    return model, int(generation), int(partition)


def _encode_pair(pair: tuple[int, int]) -> bytes:
    return b"%d %d" % pair


def _decode_pair(raw: bytes) -> tuple[int, int]:
    first, second = raw.split(b" ")
    return int(first), int(second)


GENERATIONS: Table[str, int] = Table("generations", TEXT, Codec(_count_bytes, int))
STAGED: Table[StagedKey, Share] = Table(
    "staged", Codec(_encode_staged_key, _decode_staged_key), Codec(_encode_share, _decode_share)
)
# -> (the version of the partition's rebuild, the ingest partitions the generation waits for)
GENERATION_DONE: Table[DoneKey, tuple[int, int]] = Table(
    "generation-done", Codec(_encode_done_key, _decode_done_key), Codec(_encode_pair, _decode_pair)
)


# --- the alert evaluator (one store per model-bins partition) -------------------------

# (model, hour) -> that hour bin's counters, as last emitted: the hours a rule reads (the
# period's own, its look-back's) are here, whichever partition of the metrics topic they
# came through.
HOUR_COUNTERS: Table[BinKey, Counters] = Table(
    "hour-counters", BIN_KEY, Codec(exact_json.dumps_tagged, exact_json.loads_tagged)
)


# alert key (``state.alerts.alert_key``) -> the alert: its state and history.
ALERTS: Table[str, Alert] = Table("alerts", TEXT, ALERT_RECORD)

# (model, bin size, start hour) -> the day's or week's counters, the sum of its hours',
# kept as each hour changes (``state.periods.with_hour_replaced``): a week rule reads one
# record instead of 168 hours.
ModelPeriod = tuple[str, Period, int]


def _period_key_bytes(key: ModelPeriod) -> bytes:
    model, period, start = key
    return f"{model}\0{period.value}\0{start:0{_HOUR_DIGITS}d}".encode()


def _period_key_of(raw: bytes) -> ModelPeriod:
    model, period, start = raw.decode().split("\0")
    return model, Period(period), int(start)


PERIOD_COUNTERS: Table[ModelPeriod, Counters] = Table(
    "period-counters",
    Codec(_period_key_bytes, _period_key_of),
    Codec(exact_json.dumps_tagged, exact_json.loads_tagged),
)

# alert key -> b"": the open alerts (warning or critical), so that those of a deleted rule
# are found without reading every alert ever kept.
OPEN_ALERTS: Table[str, bytes] = Table("open-alerts", TEXT, BYTES)

# (due ms, model, bin size, period start hour) of a period that could not be judged yet.
DueKey = tuple[int, str, Period, int]


def _due_key_bytes(key: DueKey) -> bytes:
    due, model, period, start = key
    return f"{due:0{_MS_DIGITS}d}\0{model}\0{period.value}\0{start}".encode()


def _due_key_of(raw: bytes) -> DueKey:
    due, model, period, start = raw.decode().split("\0")
    return int(due), model, Period(period), int(start)


# (due ms, model, bin size, start) -> b"": the tick finds the periods that came due by one
# scan from the oldest.
DUE: Table[DueKey, bytes] = Table("alerts-due", Codec(_due_key_bytes, _due_key_of), BYTES)
