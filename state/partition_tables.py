"""Every table of the partition stores, declared once with its key and value codec.

The merge stage's tables live in each ingest partition's store, the bins stage's in
each bin-partials partition's store; all are written through a ``PartitionTransaction``
(``state.tables``) and reach the changelog as ``table \\0 key`` records. To add a table:
declare it here, and read and write it through the transaction.
"""

from __future__ import annotations

# --- the merge stage (one store per ingest partition) ---------------------------------


# --- the bins stage (one store per bin-partials partition) ----------------------------
