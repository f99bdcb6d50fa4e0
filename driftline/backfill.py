"""`driftline backfill`: historical events published with their original times, at full
speed, resumable after an interruption.

The sources (CSV/Parquet files, or another Kafka topic mapped field by field) yield rows;
each becomes an insert through the client's checks (``state.tabular``) and the ingest
wire format (``topics.messages``), or a refusal with its reason (``state.backfill``).
Every ``checkpoint_every`` rows the producer is flushed, and once the broker has
acknowledged every row so far, the checkpoint file moves past them: a SIGKILL loses at
most the rows since, and the rerun sends them again under the same ids, as replacements.

The checkpoint lives under the Driftline home (``<home>/backfills/<digest>.json``), named
after what is backfilled where: the source, the model, the cluster and topic prefix.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from tqdm import tqdm

from driftline.settings import Settings
from driftline.state import exact_json
from driftline.state.backfill import (
    Checkpoint,
    FieldPath,
    SourceRow,
    advanced,
    backfill_event,
    mapped_row,
    parse_mapping,
)
from driftline.state.spec import ModelSpec
from driftline.state.tabular import InvalidEventError, OutgoingEvent, count_rows, iter_rows
from driftline.topics.clients import consumer_config
from driftline.topics.messages import encode_ingest, ingest_key
from driftline.topics.offsets import watermarks
from driftline.topics.producer import CheckedProducer

# Throughput over latency: batches fill for up to 50 ms (the producers' default is 5 ms,
# for live traffic); lz4 and batches of up to 10,000 messages are every producer's.
THROUGHPUT = {"linger.ms": 50}
SUFFIXES = (".csv", ".parquet")


class Source(Protocol):
    """Where a backfill's rows come from."""

    # Named in the checkpoint's name: the same source, model and cluster, the same file.
    identity: str
    # What the source was when the backfill began: a changed one cannot resume.
    fingerprint: Any
    # A topic grows: rerun after it finished, a backfill goes on from its offsets.
    grows: bool

    def total(self, position: Mapping[str, int]) -> int | None:
        """Rows left after ``position``, when cheap to know (for the progress bar)."""
        ...

    def rows(self, position: Mapping[str, int]) -> Iterator[SourceRow]:
        """The rows after ``position``, in order."""
        ...

    def where(self, row: SourceRow) -> str:
        """A row's place, for a refusal's examples."""
        ...

    def close(self) -> None:
        """Let go of what reading took (a consumer)."""
        ...


class FileSource:
    """A .csv or .parquet file, or a directory of them read in sorted order."""

    grows = False

    def __init__(self, path: Path, id_column: str) -> None:
        self.path = path.resolve()
        self.files = source_files(self.path)
        self._id_column = id_column
        self.identity = f"files {self.path}"
        self.fingerprint = [
            [file.name, file.stat().st_size, file.stat().st_mtime_ns] for file in self.files
        ]

    def total(self, position: Mapping[str, int]) -> int | None:
        counts = [count_rows(file) for file in self.files]
        if any(count is None for count in counts):
            return None
        done = sum(position.values())
        return sum(count for count in counts if count is not None) - done

    def rows(self, position: Mapping[str, int]) -> Iterator[SourceRow]:
        for file in self.files:
            done = position.get(file.name, 0)
            read = iter_rows(file, text_columns=[self._id_column])
            for index, row in enumerate(itertools.islice(read, done, None), start=done):
                yield SourceRow(file.name, str(file), index, row)

    def where(self, row: SourceRow) -> str:
        return f"{row.part} row {row.index}"

    def close(self) -> None:
        """Nothing to let go: each file is closed once read."""


def source_files(path: Path) -> list[Path]:
    """The files a SOURCE names: itself, or a directory's .csv and .parquet files, sorted."""
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise InvalidEventError(f"unsupported file type '{path.suffix}': use .csv or .parquet")
        return [path]
    files = sorted(file for file in path.iterdir() if file.suffix in SUFFIXES and file.is_file())
    if not files:
        raise InvalidEventError(f"{path} holds no .csv or .parquet file")
    return files


class TopicSource:
    """Another Kafka topic of JSON records, mapped field by field into rows; read from the
    checkpoint's offsets to the end it had when the run began."""

    grows = True

    def __init__(
        self, bootstrap_servers: str, topic: str, mapping: Mapping[str, FieldPath], spec: ModelSpec
    ) -> None:
        self.topic = topic
        self._mapping = mapping
        self._spec = spec
        self.identity = f"topic {bootstrap_servers} {topic}"
        self.fingerprint = {target: ".".join(path) for target, path in sorted(mapping.items())}
        group = f"driftline-backfill-{uuid.uuid4()}"  # never commits: the checkpoint does
        self._consumer = Consumer(
            consumer_config(bootstrap_servers, group, **{"enable.partition.eof": True})
        )
        self._bounds = self._partition_bounds()
        self._ends = {partition: high for partition, (_, high) in self._bounds.items()}

    def total(self, position: Mapping[str, int]) -> int | None:
        return sum(
            max(0, high - max(low, position.get(str(partition), 0)))
            for partition, (low, high) in self._bounds.items()
        )

    def rows(self, position: Mapping[str, int]) -> Iterator[SourceRow]:
        starts = {p: position.get(str(p), OFFSET_BEGINNING) for p in self._ends}
        left = {p for p, end in self._ends.items() if starts[p] < end}
        self._consumer.assign([TopicPartition(self.topic, p, starts[p]) for p in sorted(left)])
        while left:
            for message in self._consumer.consume(10_000, 1.0):
                partition = message.partition()
                if partition not in left:
                    continue
                error = message.error()
                if error is not None and error.code() == KafkaError._PARTITION_EOF:
                    left.discard(partition)
                    continue
                if error is not None:
                    raise RuntimeError(f"reading {self.topic}: {error.str()}")
                yield self._row(message)
                if message.offset() + 1 >= self._ends[partition]:
                    left.discard(partition)

    def where(self, row: SourceRow) -> str:
        return f"{self.topic} partition {row.part} offset {row.index}"

    def close(self) -> None:
        self._consumer.close()

    def _row(self, message: Message) -> SourceRow:
        partition, offset = message.partition(), message.offset()
        origin = f"{self.topic}/{partition}"
        return SourceRow(str(partition), origin, offset, self._mapped(message.value()))

    def _mapped(self, value: bytes | None) -> Mapping[str, Any] | str:
        if value is None:
            return "empty record (a tombstone)"
        try:
            record = exact_json.loads(value)
        except exact_json.JSONError:
            return "record is not valid JSON"
        return mapped_row(record, self._mapping, self._spec)

    def _partition_bounds(self) -> dict[int, tuple[int, int]]:
        """Each partition's (low, high) offsets when the run begins: it reads up to them."""
        metadata = self._consumer.list_topics(self.topic, timeout=30).topics.get(self.topic)
        if metadata is None or metadata.error is not None:
            raise InvalidEventError(f"no topic {self.topic} to backfill from")
        return {
            partition: watermarks(self._consumer, TopicPartition(self.topic, partition))
            for partition in sorted(metadata.partitions)
        }


class CheckpointFile:
    """The checkpoint of one backfill, replaced whole (a rename) at each step: a kill
    leaves the previous checkpoint or the next, never half of one."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def under_home(cls, settings: Settings, source: Source, spec: ModelSpec) -> CheckpointFile:
        named = (
            f"{source.identity}\n{spec.key}\n{settings.bootstrap_servers}\n{settings.topic_prefix}"
        )
        digest = hashlib.sha256(named.encode()).hexdigest()[:24]
        return cls(settings.home / "backfills" / f"{digest}.json")

    def load(self) -> Checkpoint | None:
        if not self.path.exists():
            return None
        return Checkpoint.from_dict(exact_json.loads(self.path.read_bytes()))

    def save(self, checkpoint: Checkpoint) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        written = self.path.with_suffix(".tmp")
        written.write_bytes(exact_json.dumps(checkpoint.to_dict()))
        os.replace(written, self.path)


class SourceChangedError(RuntimeError):
    """The checkpoint was written for another state of the source."""


def resumed(file: CheckpointFile, source: Source, restart: bool) -> Checkpoint:
    """Where this run starts: the checkpoint of an earlier run of the same backfill, or
    the beginning (none yet, or ``restart``)."""
    found = None if restart else file.load()
    if found is None:
        return Checkpoint(source.identity, source.fingerprint)
    if found.fingerprint != source.fingerprint:
        raise SourceChangedError(
            f"the source changed since checkpoint {file.path} was written; rerun with "
            "--restart to publish it from the beginning"
        )
    found.finished = found.finished and not source.grows
    return found


@dataclass(frozen=True, slots=True)
class RunResult:
    checkpoint: Checkpoint
    published: int  # by this run
    elapsed_s: float


class Publisher:
    """Inserts onto the ingest topic with a producer tuned for throughput."""

    def __init__(self, settings: Settings, ingest_topic: str, spec: ModelSpec) -> None:
        self._producer = CheckedProducer(settings.bootstrap_servers, **THROUGHPUT)
        self._topic = ingest_topic
        self._spec = spec

    def send(self, event: OutgoingEvent) -> None:
        project_id, model_id = self._spec.project_id, self._spec.model_id
        value = encode_ingest(
            "insert", project_id, model_id, event.event_id, event.columns, event.timestamp_ms
        )
        self._producer.produce(self._topic, ingest_key(project_id, model_id, event.event_id), value)

    def poll(self) -> None:
        self._producer.poll()

    def flush(self) -> None:
        """Wait until the broker acknowledged every row sent; ``DeliveryError`` if not."""
        self._producer.flush(120)


class Backfill:
    """One run of a backfill: the rows after the checkpoint, published, the checkpoint
    moved on each time the broker has acknowledged ``checkpoint_every`` more rows."""

    def __init__(
        self,
        source: Source,
        spec: ModelSpec,
        publisher: Publisher,
        file: CheckpointFile,
        checkpoint: Checkpoint,
    ) -> None:
        self.source = source
        self.spec = spec
        self.publisher = publisher
        self.file = file
        self.checkpoint = checkpoint

    def run(self, checkpoint_every: int, progress: bool = True) -> RunResult:
        started = time.monotonic()
        before = self.checkpoint.report.published
        total = self.source.total(self.checkpoint.position)
        bar = tqdm(total=total, unit=" rows", disable=not progress)
        pending: dict[str, int] = {}
        count = 0
        try:
            for count, row in enumerate(self.source.rows(self.checkpoint.position), start=1):
                self._publish(row)
                pending[row.part] = row.index + 1
                if count % 1000 == 0:
                    self.publisher.poll()
                    bar.update(1000)
                if count % checkpoint_every == 0:
                    self._step(pending, finished=False)
            self._step(pending, finished=True)
        finally:
            bar.update(count - bar.n)
            bar.close()
        published = self.checkpoint.report.published - before
        return RunResult(self.checkpoint, published, time.monotonic() - started)

    def _publish(self, row: SourceRow) -> None:
        event = backfill_event(self.spec, row)
        if isinstance(event, str):
            self.checkpoint.report.refuse(event, self.source.where(row))
        else:
            self.publisher.send(event)
            self.checkpoint.report.published += 1

    def _step(self, pending: dict[str, int], finished: bool) -> None:
        """Flush (every row so far acknowledged, or ``DeliveryError``), then write the
        position reached and the report up to it."""
        self.publisher.flush()
        self.checkpoint.position = advanced(self.checkpoint.position, pending)
        self.checkpoint.finished = finished
        self.file.save(self.checkpoint)
        pending.clear()


def with_columns(spec: ModelSpec, id_column: str | None, timestamp_column: str | None) -> ModelSpec:
    """The spec with the source's own id and time columns, where they differ from the
    spec's ``event_id_col`` / ``event_ts_col``."""
    return replace(
        spec,
        event_id_col=id_column or spec.event_id_col,
        event_ts_col=timestamp_column or spec.event_ts_col,
    )


def open_source(
    settings: Settings,
    spec: ModelSpec,
    path: Path | None,
    from_topic: str | None,
    from_bootstrap: str | None,
    pairs: tuple[str, ...],
) -> FileSource | TopicSource:
    """The files at ``path``, or the topic ``from_topic`` (on ``from_bootstrap``, else on
    Driftline's own cluster) read through the ``--map`` pairs."""
    if from_topic is None:
        assert path is not None
        return FileSource(path, spec.event_id_col)
    bootstrap = from_bootstrap or settings.bootstrap_servers
    return TopicSource(bootstrap, from_topic, parse_mapping(pairs, spec), spec)
