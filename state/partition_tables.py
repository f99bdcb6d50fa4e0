"""Every table of the partition stores, declared once with its key and value codec.

The merge stage's tables live in each ingest partition's store, the bins stage's in
each bin-partials partition's store; all are written through a ``PartitionTransaction``
(``state.tables``) and reach the changelog as ``table \\0 key`` records. To add a table:
declare it here, and read and write it through the transaction.
"""

from __future__ import annotations

from driftline.state import exact_json
from driftline.state.bin_totals import Share, ShareKey, bin_of
from driftline.state.bins import BIN_KEY, BinKey, Counters
from driftline.state.tables import BYTES, Codec, Table

# --- the merge stage (one store per ingest partition) ---------------------------------


# --- the bins stage (one store per bin-partials partition) ----------------------------

# Stage 1, ``partials``, lives in each ingest partition's store instead, beside the events
# it sums, and is written in the merge stage's batches: the partition's share of every
# hour bin. Stage 2 keeps per bin the newest share of every ingest partition, and the
# bins changed but not emitted yet (their emission interval had not passed).


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
    return exact_json.dumps_tagged({"v": share.version, "c": share.counters or None})


def _decode_share(raw: bytes) -> Share:
    stored = exact_json.loads_tagged(raw)  # records of old versions also hold "p"
    return Share(stored["v"], stored["c"] or {})


PARTIALS: Table[BinKey, Counters] = Table(
    "partials", BIN_KEY, Codec(exact_json.dumps_tagged, exact_json.loads_tagged)
)
SHARES: Table[ShareKey, Share] = Table(
    "shares",
    Codec(_encode_share_key, _decode_share_key),
    Codec(_encode_share, _decode_share),
)
# A bin waiting for its emission, deleted once emitted; only the key matters.
DIRTY: Table[BinKey, bytes] = Table("dirty", BIN_KEY, BYTES)
MARKED = b""
