"""Worker memory and disk as stored events grow, and the restart with all of them stored.

    python benchmarks/memory.py [--events 1000000,10000000] [--partitions 8] [--keep DIR]

Starts a worker, then publishes inserts of distinct events (12 columns, the model of
``benchmarks/ingest.py``) stage by stage; once the merge agent's lag is zero at each
stage it prints the worker's resident memory (VmRSS then, 15 s later, and its peak
VmHWM so far), what RocksDB says it holds (memtables, index and filter blocks outside the
cache, block cache; from the worker's ``/internal/memory``), the state directory's bytes
on disk and those per stored event. Then it restarts the worker on the same state
directory, after a SIGTERM and after a SIGKILL, each time with a fresh probe event
waiting, and times process start -> ready -> the probe consumed (merge lag zero).
Uses KAFKA_BOOTSTRAP_SERVERS / REDIS_URL when set, else starts the embedded broker and
Redis in a temporary directory.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ingest import SPEC, infrastructure
from driftline.client import Driftline
from driftline.internal_secret import internal_secret
from driftline.settings import Settings
from driftline.stack.kafka import free_port
from driftline.stack.worker import WorkerProcess
from driftline.topics.catalog import Topics
from driftline.topics.internal_routes import HEADER
from driftline.topics.messages import encode_ingest, ingest_key
from driftline.topics.producer import CheckedProducer
from driftline.topics.progress import GroupProgress, merge_progress

MIB = 1024 * 1024
SETTLE_S = 15.0


class Publisher:
    """Inserts of new events from a pool of pre-encoded values with the id spliced in:
    encoding each event afresh would cost the load generator as much CPU as the worker
    spends merging it, on the same 2 cores."""

    def __init__(self, settings: Settings) -> None:
        self._producer = CheckedProducer(settings.bootstrap_servers)
        self._topic = Topics.for_settings(settings).ingest.name
        rng = random.Random(1)
        now_ms = int(time.time() * 1000)
        self._pool = []
        for _ in range(1000):
            columns: dict[str, Any] = {f"f{k}": rng.random() for k in range(10)}
            columns.update(score=rng.random(), label=None)
            value = encode_ingest("insert", "bench", "m", "@ID@", columns,
                                  now_ms - rng.randrange(24 * 3600 * 1000))  # fmt: skip
            head, tail = value.split(b"@ID@")
            self._pool.append((head, tail))
        self.sent = 0

    def publish(self, count: int, prefix: str = "e") -> None:
        for _ in range(count):
            event_id = f"{prefix}{self.sent}"
            head, tail = self._pool[self.sent % len(self._pool)]
            self._producer.produce(
                self._topic, ingest_key("bench", "m", event_id), head + event_id.encode() + tail
            )
            self.sent += 1
            if self.sent % 10_000 == 0:
                self._producer.poll()
        self._producer.flush()


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def disk_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


def worker_memory(worker: WorkerProcess) -> dict[str, Any]:
    secret = {HEADER: internal_secret(worker.settings)}
    request = urllib.request.Request(f"{worker.url}/internal/memory", headers=secret)
    with urllib.request.urlopen(request, timeout=10) as response:
        found: dict[str, Any] = orjson.loads(response.read())
        return found


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"benchmark: {what} not reached in {timeout_s:.0f} s")
        time.sleep(0.05)


def stage_report(stored: int, worker: WorkerProcess, state: Path, took_s: float) -> None:
    assert worker.process is not None
    pid = worker.process.pid
    rss = status_kib(pid, "VmRSS") * 1024
    peak = status_kib(pid, "VmHWM") * 1024
    found = worker_memory(worker)
    rocks = found["rocksdb"]
    disk = disk_bytes(state)
    per_event = f"{disk / stored:6.0f} B/event" if stored else ""
    # Past the worker's heap trimming interval, with nothing to consume.
    time.sleep(SETTLE_S)
    settled = status_kib(pid, "VmRSS") * 1024
    print(
        f"{stored:>11,} stored: RSS {rss / MIB:6.0f} MiB ({settled / MIB:4.0f} {SETTLE_S:.0f} s "
        f"later, peak {peak / MIB:4.0f}); RocksDB "
        f"memtables {rocks['size-all-mem-tables'] / MIB:5.0f}, table readers "
        f"{rocks['estimate-table-readers-mem'] / MIB:5.0f}, block cache "
        f"{rocks['block-cache-usage'] / MIB:5.0f} MiB; disk {disk / MIB:7.0f} MiB "
        f"{per_event} ({took_s:.0f} s)",
        flush=True,
    )


def restart(
    settings: Settings, publisher: Publisher, progress: GroupProgress, log: Path
) -> tuple[WorkerProcess, float, float]:
    """A new worker on the same state with a fresh probe waiting: (worker, seconds to
    ready, seconds to the probe consumed), both from process start."""
    publisher.publish(1, prefix="probe")
    started = time.perf_counter()
    worker = WorkerProcess(settings, log).start()
    ready = time.perf_counter() - started
    wait_for(lambda: progress.lag() <= 0, 600, "merge lag zero after the restart")
    return worker, ready, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", default="1000000,10000000",
                        help="stored events at each stage, comma-separated")  # fmt: skip
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it (logs)")
    args = parser.parse_args()
    stages = [int(n) for n in args.events.split(",")]
    with tempfile.TemporaryDirectory(prefix="driftline-bench-") as tmp:
        workdir = Path(tmp) if args.keep is None else args.keep
        state = workdir / "state"
        base = Settings.from_env().with_overrides(
            topic_prefix=f"bench{uuid.uuid4().hex[:8]}",
            ingest_partitions=args.partitions,
            worker_port=free_port(),
            data_dir=state,
        )
        print(f"events: stages {', '.join(f'{n:,}' for n in stages)} "
              f"({args.partitions} partitions, 1 worker)", flush=True)  # fmt: skip
        with infrastructure(base, workdir) as settings:
            with Driftline(settings) as client:
                client.register_model(SPEC)
            publisher = Publisher(settings)
            progress = merge_progress(settings)
            worker = WorkerProcess(settings, workdir / "worker.log").start()
            try:
                stage_report(0, worker, state, 0)
                for stored in stages:
                    started = time.perf_counter()
                    publisher.publish(stored - publisher.sent)
                    wait_for(lambda: progress.lag() <= 0, 3600, f"{stored:,} events merged")
                    stage_report(stored, worker, state, time.perf_counter() - started)
                worker.stop()
                worker, ready, working = restart(
                    settings, publisher, progress, workdir / "worker-sigterm.log"
                )
                print(f"restart after SIGTERM: ready {ready:5.1f} s, probe consumed "
                      f"{working:5.1f} s after process start", flush=True)  # fmt: skip
                stage_report(stages[-1], worker, state, working)
                worker.kill()
                worker, ready, working = restart(
                    settings, publisher, progress, workdir / "worker-sigkill.log"
                )
                print(f"restart after SIGKILL: ready {ready:5.1f} s, probe consumed "
                      f"{working:5.1f} s after process start", flush=True)  # fmt: skip
            finally:
                worker.stop()
                progress.close()


if __name__ == "__main__":
    main()
