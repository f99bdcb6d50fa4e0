"""Integration tests: the pipeline on the real broker and Redis (worker processes,
restore, rebalance, recovery, outages, poison messages, bins, erasure). ``make
integration`` runs this folder."""
