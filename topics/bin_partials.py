"""The bin-partials topic's records: what an ingest partition's batch did to an hour bin.

Key: the bin, ``project/model/<hour>`` (``state.bins.BIN_KEY``). Value: a header line, a
format byte then ``<ingest partition> <version>``, then the counters as tagged JSON (or
``null``) (``topics/SCHEMAS.md``): 0x02, the change one batch made to the partition's
share (a delta); 0x01, the partition's whole share (a snapshot, sent by a rebuild). The
merge stage writes them and the bins stage reads them, both through ``BIN_PARTIAL``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from driftline.state import exact_json
from driftline.state.bin_totals import (
    DELTA_FORMAT,
    DONE_FORMAT,
    SHARE_FORMAT,
    STAGED_FORMAT,
    Share,
    read_share_record,
    share_record,
)
from driftline.state.tables import Codec


@dataclass(frozen=True, slots=True)
class BinPartial:
    """One record of ``partition`` (an ingest partition) about the keyed bin: its share
    (``kind`` SHARE_FORMAT), the change one of its batches made to it (DELTA_FORMAT), its
    share in rebuild ``generation`` (STAGED_FORMAT); or, keyed by the model, its word that
    it sent every share of that generation, one of ``partitions`` (DONE_FORMAT)."""

    partition: int
    share: Share
    kind: bytes = SHARE_FORMAT
    generation: int = 0
    partitions: int = 0

    @property
    def delta(self) -> bool:
        return self.kind == DELTA_FORMAT


# How many numbers each kind of record carries before its version.
_HEADER_NUMBERS = {SHARE_FORMAT: 1, DELTA_FORMAT: 1, STAGED_FORMAT: 2, DONE_FORMAT: 3}


def _encode(partial: BinPartial) -> bytes:
    before = [partial.partition]
    if partial.kind in (STAGED_FORMAT, DONE_FORMAT):
        before.append(partial.generation)
    if partial.kind == DONE_FORMAT:
        before.append(partial.partitions)
    return share_record(partial.share, *before, kind=partial.kind)


def _decode(raw: bytes) -> BinPartial:
    """The header read, the counters kept encoded (``Share``); a snapshot written before
    that format (a JSON object) still reads."""
    read = read_share_record(raw)
    if read is not None:
        numbers = _HEADER_NUMBERS[read.kind]
        if len(read.before) != numbers or min(read.before, default=0) < 0:
            raise ValueError(
                f"expected {numbers} non-negative numbers before the version in a "
                f"{read.kind!r} record; got {read.before}"
            )
        if read.kind == DONE_FORMAT and read.before[2] < 1:
            raise ValueError(
                f"expected at least 1 ingest partition in a done record; got {read.before[2]}"
            )
        partition, generation, partitions = [*read.before, 0, 0][:3]
        return BinPartial(partition, read.share, read.kind, generation, partitions)
    snapshot = exact_json.loads_tagged(raw)
    return BinPartial(snapshot["p"], Share(snapshot["v"], snapshot["c"] or {}))


BIN_PARTIAL: Codec[BinPartial] = Codec(_encode, _decode)

# Header of a snapshot whose batch applied labels to the bin: the earliest of their Kafka
# timestamps on the ingest topic, in ms (decimal text), for the label-to-emission latency.
LABEL_ARRIVAL = "driftline.label-ms"


def label_header(received_ms: int) -> tuple[str, bytes]:
    return LABEL_ARRIVAL, str(received_ms).encode()


def label_arrival(headers: Sequence[tuple[str, bytes]] | None) -> int | None:
    """The label arrival a snapshot's headers carry, or None."""
    for name, raw in headers or ():
        if name == LABEL_ARRIVAL:
            return int(raw)
    return None
