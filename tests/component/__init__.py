"""Component tests: one processor at a time, driven without a broker.

A component test feeds a processor (merge, partials, bins, deletions, serving, ...)
messages as the broker would deliver them, through ``ProcessorDriver``
(``agents/driver.py``: the runtime's batches on a real partition store in a temporary
directory), and checks what the processor outputs and what its tables hold afterwards.
Nothing runs but the test's own process (no Kafka, no Redis, no worker), so a component
test takes milliseconds.

What sets the tier apart: a unit test (``tests/unit``) checks pure logic and never
builds a processor; an integration test (``tests/integration``) runs worker processes on
the real broker and Redis. A component test is where a processor's own rules are pinned:
what it decodes, which tables it reads and writes, what it emits, what it dead-letters.

Shared helpers come from ``tests/support``; fixtures from
``tests/fixtures.py`` (loaded through ``pytest_plugins``). No test module imports
another. ``make component`` runs this folder.
"""
