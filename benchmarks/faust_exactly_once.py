"""Exactly-once state changes under SIGKILL: a Faust Agent + Table against our batch engine.

    KAFKA_BOOTSTRAP_SERVERS=host:port python benchmarks/faust_exactly_once.py
        [--engines faust,runner] [--messages 4000] [--rate 100] [--kills 6]
        [--faust-store rocksdb://] [--throughput-messages 10000] [--latency-seconds 15]

Why this exists: the alert evaluator sees a few messages per second, so the issue asked
whether it could be a genuine faust-streaming agent with a Faust Table, provided that
keeps exactly-once state changes under SIGKILL. This decides it by measurement instead of
by reputation. It is a benchmark, not a test: it prints figures and asserts nothing.

Both engines run the same tiny stateful job in a worker process (this file re-invoked
with ``--worker ENGINE``): the input is keyed by a few keys, the state per key is a
running count, and every input message emits one output record ``(key, count)``, a state
change. Engine ``faust``: an agent with a Table, ``processing_guarantee="exactly_once"``.
Engine ``runner``: ``agents.runtime.PartitionedRunner`` with a four-line ``Processor``.

1. Exactly-once under SIGKILL: ``--messages`` are published at ``--rate`` per second
   while the worker is SIGKILLed ``--kills`` times, each time 1-3 s after it last made
   progress (its group's committed input offset moved), and restarted. Once all input is
   consumed, the output is read with ``isolation.level=read_committed`` and compared with
   the truth: exactly-once means each key's counts are 1..n, each once, ending at n.
2. Steady state, no kills, once the worker has handled a first message: throughput over
   ``--throughput-messages`` published at once (first sent to last output seen), then
   input->output latency at 20 messages/s for ``--latency-seconds``, both as a
   read_committed consumer sees them.

Runs on KAFKA_BOOTSTRAP_SERVERS when set, else on a broker of its own in the work dir.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

# Run as a script the repository root is not on sys.path; benchmarks/ is not installed.
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from driftline.agents.runtime import Outgoing, PartitionedRunner, RunnerConfig  # noqa: E402
from driftline.settings import Settings  # noqa: E402
from driftline.stack import LocalKafka  # noqa: E402
from driftline.stack.kafka import free_broker_port  # noqa: E402
from driftline.state.tables import BYTES, Codec, PartitionTransaction, Table  # noqa: E402
from driftline.topics.admin import ensure_topics  # noqa: E402
from driftline.topics.catalog import TopicSpec  # noqa: E402
from driftline.topics.producer import CheckedProducer  # noqa: E402

ENGINES = ("faust", "runner")
KEYS = tuple(f"k{i}".encode() for i in range(4))
SESSION_TIMEOUT_S = 6  # the broker's minimum: a killed worker's partitions return soonest
LATENCY_RATE = 20.0
PROBE_ATTEMPTS = 5


def state_change(input_value: bytes, count: int) -> bytes:
    """The output record of both engines: the key's new count, carrying the input's
    number (to find an input applied twice), send time (for latency) and phase."""
    message = orjson.loads(input_value)
    return orjson.dumps({"count": count, **message})


# --------------------------------------------------------------------------- worker side


def run_faust(args: argparse.Namespace) -> None:
    import faust

    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        processing_guarantee="exactly_once",
        store=args.faust_store,
        datadir=str(args.datadir),
        autodiscover=False,
        web_enabled=False,
        topic_replication_factor=1,
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_heartbeat_interval=1,
        broker_commit_interval=args.faust_commit_interval,
    )
    raw: faust.Schema[bytes, bytes] = faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    source = app.topic(args.input, schema=raw)
    out = app.topic(args.output, schema=raw)
    # The table's serializers follow key_type and value_type (bytes: raw, int: JSON), also
    # when it is recovered from its changelog; a schema= alone leaves recovery on JSON keys.
    counts = app.Table(
        "counts", default=int, partitions=args.partitions, key_type=bytes, value_type=int
    )

    @app.agent(source, name="count")
    async def count(stream: Any) -> None:
        async for event in stream.events():
            new = counts[event.key] + 1
            counts[event.key] = new
            await out.send(key=event.key, value=state_change(event.value, new))

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


COUNTS: Table[bytes, int] = Table("counts", BYTES, Codec(lambda n: b"%d" % n, int))


class RunningCount:
    """The job as a ``Processor`` of ``agents.runtime``: a count per key, each change sent."""

    def __init__(self, output_topic: str) -> None:
        self._topic = output_topic

    def handle(
        self, partition: int, messages: Sequence[Message], tx: PartitionTransaction, now_ms: int
    ) -> list[Outgoing]:
        outgoing = []
        for message in messages:
            key: bytes = message.key()
            new = (tx.get(COUNTS, key) or 0) + 1
            tx.set(COUNTS, key, new)
            outgoing.append(Outgoing(self._topic, key, state_change(message.value(), new)))
        return outgoing

    def tick(self, partition: int, tx: PartitionTransaction, now_ms: int) -> list[Outgoing]:
        return []

    def dead_letter(
        self, partition: int, message: Message, reason: str, tx: PartitionTransaction
    ) -> list[Outgoing]:
        return []


def runner_topics(group: str) -> tuple[str, str]:
    """The runner's changelog and dead-letter topics."""
    return f"{group}.changelog", f"{group}.dead-letters"


def run_runner(args: argparse.Namespace) -> None:
    changelog, dead_letters = runner_topics(args.group)
    config = RunnerConfig(
        name="count",
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        input_topic=args.input,
        changelog_topic=changelog,
        dead_letter_topic=dead_letters,
        data_dir=args.datadir,
        session_timeout_ms=SESSION_TIMEOUT_S * 1000,
    )
    runner = PartitionedRunner(config, RunningCount(args.output))
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    runner.run()


# --------------------------------------------------------------------------- driver side


@dataclass
class Output:
    partition: int
    offset: int
    key: bytes
    count: int
    input: int
    sent: float
    seen: float
    phase: str


@dataclass
class OutputReader:
    """Reads the output topic as a downstream consumer would (read_committed), live."""

    bootstrap: str
    topic: str
    partitions: int
    records: list[Output] = field(default_factory=list)
    last_seen: float = field(default_factory=time.time)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        # A short fetch wait: librdkafka's default (500 ms) would be measured as latency.
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "unused",
                "isolation.level": "read_committed",
                "fetch.wait.max.ms": 10,
            }
        )
        consumer.assign(
            [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(self.partitions)]
        )
        while not self._stop.is_set():
            for message in consumer.consume(1000, 0.1):
                if message.error() is None:
                    now = time.time()
                    value = orjson.loads(message.value())
                    self.records.append(Output(message.partition(), message.offset(),
                                               message.key(), value["count"], value["i"],
                                               value["sent"], now, value["phase"]))  # fmt: skip
                    self.last_seen = now
        consumer.close()

    def wait_for(self, phase: str, count: int, timeout_s: float) -> None:
        """Until ``count`` outputs of ``phase`` have been seen (or the timeout)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sum(1 for record in self.records if record.phase == phase) >= count:
                return
            time.sleep(0.1)

    def stop_when_quiet(self, quiet_s: float = 3.0) -> list[Output]:
        while time.time() - self.last_seen < quiet_s:
            time.sleep(0.2)
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.records


def publish(
    bootstrap: str, topic: str, count: int, rate: float | None, phase: str
) -> Counter[bytes]:
    """``count`` messages spread over the keys, at ``rate`` per second (None: at once)."""
    producer = CheckedProducer(bootstrap, **{"compression.type": "none", "linger.ms": 0})
    truth: Counter[bytes] = Counter()
    started = time.monotonic()
    for i in range(count):
        if rate is not None:
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
        key = KEYS[i % len(KEYS)]
        truth[key] += 1
        producer.produce(topic, key, orjson.dumps({"i": i, "sent": time.time(), "phase": phase}))
        producer.poll()
    producer.flush()
    return truth


class Job:
    """One engine's worker process, started, SIGKILLed and restarted by the driver."""

    def __init__(self, engine: str, args: argparse.Namespace, names: dict[str, str],
                 workdir: Path) -> None:  # fmt: skip
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.command = [
            sys.executable, str(Path(__file__).resolve()), "--worker", engine,
            "--bootstrap", args.bootstrap, "--group", names["group"], "--input", names["input"],
            "--output", names["output"], "--partitions", str(args.partitions),
            "--datadir", str(workdir / "data"), "--faust-store", args.faust_store,
            "--faust-commit-interval", str(args.faust_commit_interval),
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None
        # read_uncommitted: a read_committed consumer asks for stable offsets only, and a
        # Faust worker killed between sending its offsets to a transaction and committing
        # it leaves them unstable until its successor fences it (or the transaction times out).
        self.probe = Consumer({"bootstrap.servers": args.bootstrap, "group.id": names["group"],
                               "enable.auto.commit": False,
                               "isolation.level": "read_uncommitted"})  # fmt: skip
        self.partitions = [TopicPartition(names["input"], p) for p in range(args.partitions)]
        self.messages = args.messages

    def start(self) -> None:
        with (self.workdir / "worker.log").open("ab") as log:
            self.process = subprocess.Popen(self.command, cwd=_ROOT, stdout=log,
                                            stderr=subprocess.STDOUT)  # fmt: skip

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL, this process only
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.probe.close()

    def consumed(self) -> int:
        """Input messages the group has committed as consumed; a slow answer (a busy
        machine, a coordinator moving after a kill) is asked again."""
        for _ in range(PROBE_ATTEMPTS - 1):
            try:
                return self._committed()
            except KafkaException:
                time.sleep(1)
        return self._committed()

    def _committed(self) -> int:
        committed = self.probe.committed(self.partitions, timeout=10)
        return sum(max(tp.offset, 0) for tp in committed)

    def wait_for_progress(self, since: int, timeout_s: float) -> None:
        """Until the worker has committed input past ``since``: a kill then lands while it
        processes, not while it restores or rejoins its group."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            consumed = self.consumed()
            if consumed > since or consumed >= self.messages:
                return
            time.sleep(0.2)


def fresh_topics(args: argparse.Namespace, engine: str, purpose: str) -> dict[str, str]:
    group = f"eosbench-{engine}-{purpose}-{uuid.uuid4().hex[:8]}"
    names = {"group": group, "input": f"{group}.input", "output": f"{group}.output"}
    # Faust creates its own changelog; the runner's are created here, as by the worker.
    owned = [names["input"], names["output"], *(runner_topics(group) if engine == "runner" else ())]
    ensure_topics(args.bootstrap, [TopicSpec(name, args.partitions) for name in owned])
    return names


def exactly_once_run(engine: str, args: argparse.Namespace, workdir: Path) -> None:
    names = fresh_topics(args, engine, "kills")
    reader = OutputReader(args.bootstrap, names["output"], args.partitions)
    reader.start()
    truth: Counter[bytes] = Counter()
    publisher = threading.Thread(target=lambda: truth.update(
        publish(args.bootstrap, names["input"], args.messages, args.rate, "kills")))  # fmt: skip
    job = Job(engine, args, names, workdir)
    rng = random.Random(args.seed)
    kills_at: list[int] = []
    try:
        job.start()
        publisher.start()
        while len(kills_at) < args.kills:
            job.wait_for_progress(kills_at[-1] if kills_at else 0, timeout_s=120)
            if job.consumed() >= args.messages:
                break  # nothing left to interrupt
            time.sleep(rng.uniform(1.0, 3.0))
            job.kill()
            kills_at.append(job.consumed())
            job.start()
        publisher.join()
        deadline = time.monotonic() + args.timeout
        while job.consumed() < args.messages and time.monotonic() < deadline:
            time.sleep(0.5)
        consumed = job.consumed()
    finally:
        job.stop()
    report_exactly_once(engine, truth, reader.stop_when_quiet(), kills_at, consumed)


def report_exactly_once(engine: str, truth: Counter[bytes], records: list[Output],
                        kills_at: list[int], consumed: int) -> None:  # fmt: skip
    """Exactly-once state changes: per key the counts 1..n, each once, the last one n; and
    every input behind exactly one of them."""
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for record in records:  # in offset order per partition, so per key
        by_key[record.key].append(record.count)
    duplicated = missing = beyond = wrong_final = 0
    for key, n in sorted(truth.items()):
        seen = Counter(by_key[key])
        duplicated += sum(times - 1 for times in seen.values() if times > 1)
        missing += sum(1 for count in range(1, n + 1) if count not in seen)
        beyond += sum(times for count, times in seen.items() if count > n)
        final = by_key[key][-1] if by_key[key] else 0
        wrong_final += final != n
        print(f"  {engine} {key.decode()}: truth {n}, final count {final}")
    applied = Counter(record.input for record in records)
    twice = sum(1 for times in applied.values() if times > 1)
    never = sum(truth.values()) - len(applied)
    broken = duplicated or missing or beyond or wrong_final or twice or never
    # A committed transaction leaves a marker at the offset after its records: none at all
    # means the outputs were not written in the transactions that commit the input.
    last: dict[int, int] = {}
    markers = 0
    for record in records:
        markers += record.partition in last and record.offset != last[record.partition] + 1
        last[record.partition] = record.offset
    print(f"{engine}: {len(kills_at)} SIGKILLs (inputs consumed at each: {kills_at}); "
          f"inputs {sum(truth.values())}, consumed {consumed}, committed outputs {len(records)}; "
          f"duplicated (key, count) {duplicated}, missing counts {missing}, counts beyond the "
          f"truth {beyond}, inputs applied twice {twice}, never {never}, keys with a wrong "
          f"final count {wrong_final}/{len(truth)}; transaction markers between the outputs "
          f"{markers} -> "
          f"{'NOT exactly once' if broken else 'exactly once'}")  # fmt: skip


def steady_run(engine: str, args: argparse.Namespace, workdir: Path) -> None:
    """Throughput and latency of a started worker, with no kills.

    Throughput is timed from the publishing of the first message to the arrival of the last
    output, as a downstream consumer sees it: timing the outputs alone would credit the
    runner with a whole batch's outputs made visible by one commit.
    """
    names = fresh_topics(args, engine, "steady")
    reader = OutputReader(args.bootstrap, names["output"], args.partitions)
    reader.start()
    job = Job(engine, args, names, workdir)
    count = int(args.latency_seconds * LATENCY_RATE)
    try:
        job.start()
        publish(args.bootstrap, names["input"], 1, None, "warm-up")
        reader.wait_for("warm-up", 1, args.timeout)
        started = time.time()
        publish(args.bootstrap, names["input"], args.throughput_messages, None, "throughput")
        reader.wait_for("throughput", args.throughput_messages, args.timeout)
        publish(args.bootstrap, names["input"], count, LATENCY_RATE, "latency")
        reader.wait_for("latency", count, args.timeout)
    finally:
        job.stop()
    records = reader.stop_when_quiet()
    drained = [r.seen for r in records if r.phase == "throughput"]
    rate = len(drained) / (max(drained) - started) if drained else 0.0
    latencies = sorted((r.seen - r.sent) * 1000 for r in records if r.phase == "latency")
    p50, p90, p99 = (statistics.quantiles(latencies, n=100)[i] for i in (49, 89, 98))
    print(f"{engine}: throughput {rate:,.0f} msgs/s ({len(drained)} of "
          f"{args.throughput_messages} outputs seen); latency at {LATENCY_RATE:.0f} msgs/s "
          f"over {len(latencies)} of {count}: p50 {p50:.0f} ms, p90 {p90:.0f} ms, "
          f"p99 {p99:.0f} ms")  # fmt: skip


@contextmanager
def broker(bootstrap: str | None, workdir: Path) -> Iterator[str]:
    """The broker given, else one of our own for the run (as ``benchmarks/ingest.py``)."""
    if bootstrap is not None:
        yield bootstrap
        return
    kafka = LocalKafka(Settings().home, workdir / "kafka", free_broker_port())
    kafka.start()
    try:
        yield kafka.bootstrap_servers
    finally:
        kafka.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated")
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=50.0, help="msgs/s during the kills")
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--faust-store", default="rocksdb://")
    parser.add_argument("--faust-commit-interval", type=float, default=0.1, help="seconds")
    parser.add_argument("--throughput-messages", type=int, default=30_000)
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    parser.add_argument("--skip", choices=("kills", "steady"), help="leave one part out")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to drain")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, help="keep worker logs and stores here")
    # Internal: run one engine's worker (the driver re-invokes this file with these).
    parser.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    for name in ("--group", "--input", "--output"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--datadir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    args = parser.parse_args()
    if args.worker is not None:
        (run_faust if args.worker == "faust" else run_runner)(args)
        return
    with tempfile.TemporaryDirectory(prefix="driftline-eos-") as tmp:
        workdir = args.workdir or Path(tmp)
        with broker(args.bootstrap, workdir) as args.bootstrap:
            for engine in args.engines.split(","):
                if args.skip != "kills":
                    exactly_once_run(engine, args, workdir / engine / "kills")
                if args.skip != "steady":
                    steady_run(engine, args, workdir / engine / "steady")


if __name__ == "__main__":
    main()
