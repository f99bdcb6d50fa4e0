"""Wire format of the changelog topics (``<prefix>.merge-changelog``, ``.bins-changelog``).

A committed batch of a partition is, in one Kafka transaction, its table writes as
records keyed ``<table>\\0<key>`` (``state.store.store_key``; a tombstone deletes),
closed by one checkpoint record: key ``CHECKPOINT_KEY``, value the batch's checkpoint
(``[next input offset, batch sequence]``). The engine writes it (``agents.runtime``) and
reads it back to restore a store (``agents.restore``); ``topics/SCHEMAS.md`` documents it.
"""

from __future__ import annotations

from driftline.state.store import Checkpoint

# Key of the record that closes a batch with its checkpoint. It starts with the byte 0,
# which no table name does, so it never collides with a table record.
CHECKPOINT_KEY = b"\x00input"


def checkpoint_record(checkpoint: Checkpoint) -> tuple[bytes, bytes]:
    """The (key, value) of the record that closes a batch."""
    return CHECKPOINT_KEY, checkpoint.to_bytes()


def checkpoint_of(key: bytes | None, value: bytes | None) -> Checkpoint | None:
    """The checkpoint a changelog record carries; None for a table record."""
    if key == CHECKPOINT_KEY and value is not None:
        return Checkpoint.from_bytes(value)
    return None
