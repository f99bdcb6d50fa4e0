"""Throughput ceiling of Faust's own stream and Table path, next to a librdkafka passthrough.

    python benchmarks/faust_baseline.py [--events 100000] [--partitions 8]
        [--variants decode,table,send] [--timeout 600]

Why this exists: ``agents/runtime.py`` explains that the merge agent consumes batches
with confluent-kafka and keeps its own RocksDB state instead of using a Faust agent and
Table, because on this 2-core machine the Faust path tops out at roughly 10-14k events/s
(for decoding alone) against ~140k/s for a raw passthrough. This script reproduces those
figures on demand. It is a benchmark, not a test: it prints numbers and asserts nothing.

What it measures: ``--events`` ingest-shaped JSON messages (~300 bytes, keyed
``p/m/<event_id>``, encoded by ``topics.messages.encode_ingest``, uncompressed) are
published to a fresh topic before any consumer runs. Each Faust variant then runs in its own worker
process (this file re-invoked with ``--worker VARIANT``) with a unique app id, its own
output topics and a free web port. Its agent (faust-streaming, raw key/value
serializers, ``stream.take(10000, within=0.1)``) times itself from the first message it
receives to the last one it handled, writes the figure to a result file and stops its
worker with SIGTERM, so worker start-up and group join are excluded. Variants:

- ``decode``: ``orjson.loads`` of every value and nothing else;
- ``table``: the same plus one Faust Table write per event
  (``table[b"p/m/<event_id>"] = value``; ``store='memory://'``, ``use_partitioner=True``,
  raw serializers); the clock stops after the changelog producer is flushed.
  ``store='rocksdb://'`` cannot be measured this way: a write inside ``take()`` has no
  current event and crashes with an ``AssertionError`` in ``faust/stores/rocksdb.py``;
- ``send``: the same plus ``await topic.send(key, value)`` per message through Faust's
  producer; the clock stops after the producer is flushed.

For reference the same topic is then read by ``passthrough_rate`` from
``benchmarks/ingest.py`` (confluent-kafka consume, orjson, produce).

Uses KAFKA_BOOTSTRAP_SERVERS when set, else starts the embedded broker (and Redis, which
this benchmark does not use) in a temporary directory via ``benchmarks.ingest``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

# Run as a script (``python benchmarks/faust_baseline.py``) the repository root is not on
# sys.path; benchmarks/ is not an installed package.
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from benchmarks.ingest import infrastructure, passthrough_rate  # noqa: E402
from driftline.settings import Settings  # noqa: E402
from driftline.stack.kafka import free_port  # noqa: E402
from driftline.topics.admin import ensure_topics  # noqa: E402
from driftline.topics.catalog import Topics, TopicSpec  # noqa: E402
from driftline.topics.messages import encode_ingest, ingest_key  # noqa: E402
from driftline.topics.producer import CheckedProducer  # noqa: E402

VARIANTS = ("decode", "table", "send")
DESCRIPTIONS = {
    "decode": "faust agent, orjson decode",
    "table": "faust agent, decode + Table write (memory://)",
    "send": "faust agent, decode + await topic.send()",
}
TAKE = 10_000
WITHIN_S = 0.1


# --------------------------------------------------------------------------- worker side


def run_worker(args: argparse.Namespace) -> None:
    """Run one Faust variant until it has handled ``args.events`` messages, then exit."""
    import faust

    variant: str = args.worker
    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        web_host="127.0.0.1",
        web_bind="127.0.0.1",
        web_port=args.web_port,
        datadir=str(args.datadir),
        autodiscover=False,
        store="memory://",
        topic_replication_factor=1,
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
    )
    source = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    out = app.topic(
        args.out_topic, key_serializer="raw", value_serializer="raw", partitions=args.partitions
    )
    table = app.Table(
        "events",
        schema=faust.Schema(
            key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        ),
        use_partitioner=True,
        partitions=args.partitions,
    )
    loads = orjson.loads
    target: int = args.events
    result_file = Path(args.result_file)

    def finish(seen: int, started: float) -> None:
        seconds = time.perf_counter() - started
        result_file.write_bytes(
            orjson.dumps({"variant": variant, "events": seen, "seconds": seconds})
        )
        # The worker's own SIGTERM handler shuts the app down cleanly.
        os.kill(os.getpid(), signal.SIGTERM)

    @app.agent(source, name=f"bench-{variant}")
    async def agent(stream: Any) -> None:
        seen = 0
        started: float | None = None
        async for batch in stream.take(TAKE, within=WITHIN_S):
            if started is None:
                started = time.perf_counter()
            if variant == "decode":
                for value in batch:
                    loads(value)
            elif variant == "table":
                for value in batch:
                    message = loads(value)
                    key = f"{message['project_id']}/{message['model_id']}/{message['event_id']}"
                    table[key.encode()] = value
            else:
                for value in batch:
                    message = loads(value)
                    key = f"{message['project_id']}/{message['model_id']}/{message['event_id']}"
                    await out.send(key=key.encode(), value=value)
            seen += len(batch)
            if seen >= target:
                if variant != "decode":
                    await app.producer.flush()
                finish(seen, started)
                return

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


# --------------------------------------------------------------------------- driver side


def publish(settings: Settings, topic: str, events: int) -> float:
    """Publish ``events`` inserts shaped like Driftline's ingest messages; mean size in bytes."""
    # Uncompressed: Driftline's clients use lz4, but aiokafka (Faust's consumer) cannot
    # decode lz4 without the optional lz4 package, which the project does not install.
    producer = CheckedProducer(settings.bootstrap_servers, **{"compression.type": "none"})
    now = int(time.time() * 1000)
    size = 0
    for i in range(events):
        event_id = str(uuid.uuid4())
        columns: dict[str, Any] = {f"f{k}": round((i * 7919 + k * 104729) % 10_007 / 10_007, 6)
                                   for k in range(7)}  # fmt: skip
        columns.update(score=round((i % 1000) / 1000, 3), label=i % 2, uri=f"s3://b/{i}")
        value = encode_ingest("insert", "p", "m", event_id, columns, now - i)
        size += len(value)
        producer.produce(topic, ingest_key("p", "m", event_id), value)
        if i % 10_000 == 0:
            producer.poll()
    producer.flush()
    return size / events


def run_variant(
    settings: Settings, variant: str, args: argparse.Namespace, topic: str, workdir: Path
) -> float | None:
    """Start one worker process for ``variant``; its events/s, or None if it failed."""
    app_id = f"{settings.topic_prefix}-{variant}"
    out_topic = f"{settings.topic_prefix}.{variant}.out"
    ensure_topics(settings.bootstrap_servers, [TopicSpec(out_topic, args.partitions)])
    result_file = workdir / f"{variant}.result.json"
    log_file = workdir / f"{variant}.log"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", variant,
        "--events", str(args.events), "--partitions", str(args.partitions),
        "--bootstrap", settings.bootstrap_servers, "--topic", topic,
        "--out-topic", out_topic, "--app-id", app_id, "--web-port", str(free_port()),
        "--datadir", str(workdir / variant), "--result-file", str(result_file),
    ]  # fmt: skip
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            process.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"{variant}: no result after {args.timeout}s, stopping it", file=sys.stderr)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    if not result_file.exists():
        tail = log_file.read_text(errors="replace")[-3000:]
        print(f"{variant}: worker exited {process.returncode} without a result:\n{tail}",
              file=sys.stderr)  # fmt: skip
        return None
    result = orjson.loads(result_file.read_bytes())
    events: int = result["events"]
    seconds: float = result["seconds"]
    return events / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=Settings().ingest_partitions)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per variant")
    # Internal: run one Faust variant (the driver re-invokes this file with these).
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    for name in ("--bootstrap", "--topic", "--out-topic", "--app-id", "--result-file"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--web-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--datadir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        run_worker(args)
        return

    variants = [name for name in args.variants.split(",") if name]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    rates: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory(prefix="driftline-faust-bench-") as tmp:
        workdir = Path(tmp)
        base = Settings.from_env().with_overrides(
            topic_prefix=f"faustbench{uuid.uuid4().hex[:8]}",
            ingest_partitions=args.partitions,
            data_dir=workdir / "state",
        )
        with infrastructure(base, workdir) as settings:
            ingest = Topics.for_settings(settings).ingest
            ensure_topics(settings.bootstrap_servers, [ingest])
            mean_bytes = publish(settings, ingest.name, args.events)
            for variant in variants:
                rates[variant] = run_variant(settings, variant, args, ingest.name, workdir)
            passthrough = passthrough_rate(settings, args.events)

    print(f"events: {args.events} (~{mean_bytes:.0f} B JSON, {args.partitions} partitions, "
          f"{os.cpu_count()} CPUs), take({TAKE}, within={WITHIN_S})")  # fmt: skip
    print(f"{'variant':<48} {'events/s':>10}")
    for variant in variants:
        rate = rates[variant]
        shown = "failed" if rate is None else f"{rate:,.0f}"
        print(f"{DESCRIPTIONS[variant]:<48} {shown:>10}")
    print(f"{'raw confluent-kafka passthrough (reference)':<48} {passthrough:>10,.0f}")


if __name__ == "__main__":
    main()
