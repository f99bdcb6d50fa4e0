"""What test modules share, kept out of them: no test module imports another.

- ``models``: the two models the tests register (fraud, churn) and the times their events
  fall in;
- ``pipeline``: what the pipeline has done, asked from outside (merge caught up, the
  events table's changelog, a worker's internal views);
- ``hourly_bins``: the churn model's bins in Redis and the metrics topic, and the batch
  recomputation they must equal;
- ``deletions``: deletion commands produced straight to the ingest topic, and their
  progress;
- ``api``: requests to a running API process and the churn model served behind one;
- ``values``: column values of the shapes that once crashed a worker.
- ``event_tables``: the merge rules' tables as dicts, and one batch merged into them;
- ``bins_stage``: the bins stage in-process (the churn model's events, stage 1 on a real
  store), for its component tests.

Fixtures live in ``tests/fixtures.py`` (loaded by ``tests/conftest.py`` through
``pytest_plugins``), never imported by name.
"""
