"""The bin-partials topic's records: each ingest partition's share of an hour bin.

Key: the bin, ``project/model/<hour>`` (``state.bins.BIN_KEY``). Value: tagged JSON
``{"p": ingest partition, "v": version, "c": counters or null}`` (``topics/SCHEMAS.md``),
the partition's whole share after one of its batches; the merge stage writes it and the
bins stage reads it, both through ``BIN_PARTIAL``.
"""

from __future__ import annotations

from dataclasses import dataclass

from driftline.state import exact_json
from driftline.state.bin_totals import Share
from driftline.state.tables import Codec


@dataclass(frozen=True, slots=True)
class BinPartial:
    """One snapshot: the share of ``partition`` (an ingest partition) in the keyed bin."""

    partition: int
    share: Share


def _encode(partial: BinPartial) -> bytes:
    share = partial.share
    return exact_json.dumps_tagged(
        {"p": partial.partition, "v": share.version, "c": share.counters or None}
    )


def _decode(raw: bytes) -> BinPartial:
    snapshot = exact_json.loads_tagged(raw)
    return BinPartial(snapshot["p"], Share(snapshot["v"], snapshot["c"] or {}))


BIN_PARTIAL: Codec[BinPartial] = Codec(_encode, _decode)
