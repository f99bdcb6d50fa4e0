"""The metrics and alerts topics projected into PostgreSQL: Grafana's datasource.

The layout is ``topics/postgres_tables.py``'s (one schema per topic prefix). The engine
(``agents/projection.py``) consumes and resumes; this module is the PostgreSQL side:
each batch is ONE transaction that reads the markers, writes the batch's records and
moves the markers (``projected_offsets``), so a marker never says more than the rows
hold. The batch is coalesced by key first (the last record of a key wins, as compaction
keeps it), then written set-based, one statement per kind of change with an array per
column (``unnest``): a batch of a thousand bins is a handful of round trips.

Tables that are gone (dropped by hand, a schema dropped, a new server) are noticed by
the next batch or marker check (UndefinedTable): they are created again and every
partition is projected again from the beginning of the compacted topic. A record
PostgreSQL refuses (a value out of a column's range, a document that is not one) raises
``RefusedError``, for the engine to isolate and dead-letter; any other error is an outage,
waited out (a server that is down, and one that refuses us: never a worker taken down).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

import psycopg
from confluent_kafka import Message
from psycopg import errors

from driftline.agents.projection import Projection, RefusedError
from driftline.state.bins import HOUR_MS
from driftline.state.names import split_model_key
from driftline.topics.alerts import ALERT
from driftline.topics.metric_bins import METRICS_VALUE, emitted_at_ms
from driftline.topics.postgres_tables import (
    ALERT_COLUMNS,
    BIN_COLUMNS,
    BIN_KEY,
    BIN_METRIC_COLUMNS,
    AlertRow,
    BinMetricRow,
    BinRow,
    alert_row,
    bin_metric_rows,
    bin_row,
    ddl,
    instant,
    sql_type,
)

T = TypeVar("T")
Cursor = psycopg.Cursor[Any]

# Tables or schema gone: create them again, project again from the beginning.
_TABLES_GONE = (errors.UndefinedTable, errors.InvalidSchemaName)
# Another session created the same schema or table at the same moment.
_CREATED_MEANWHILE = (
    errors.UniqueViolation,
    errors.DuplicateObject,
    errors.DuplicateSchema,
    errors.DuplicateTable,
)
CREATE_ATTEMPTS = 3


class TablesGoneError(Exception):
    """The projection's tables (or schema) no longer exist."""


class TableWriter(Protocol):
    """How one topic's records (the newest per key) become rows."""

    def write(self, cursor: Cursor, schema: str, latest: Mapping[bytes, bytes | None]) -> None:
        """Write the records (None: a tombstone); ``RefusedError`` for one that is no record."""


def columns_of(declared: Mapping[str, str]) -> str:
    return ", ".join(declared)


def unnest(declared: Mapping[str, str]) -> str:
    """``unnest(%b::text[], %b::bigint[], ...)``: one typed array per column, sent in
    binary (half the time text arrays take to encode)."""
    return "unnest(" + ", ".join(f"%b::{sql_type(t)}[]" for t in declared.values()) + ")"


def column_arrays(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column (what ``unnest`` takes)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


def upsert(schema: str, table: str, declared: Mapping[str, str], key: Iterable[str]) -> str:
    """INSERT the rows of typed arrays, replacing the rows whose ``key`` they share."""
    keys = list(key)
    updated = ", ".join(f"{c} = EXCLUDED.{c}" for c in declared if c not in keys)
    return (
        f'INSERT INTO "{schema}".{table} ({columns_of(declared)}) SELECT * FROM '
        f"{unnest(declared)} ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updated}"
    )


def delete_by_key(schema: str, table: str, key: Mapping[str, str]) -> str:
    """DELETE the rows whose ``key`` columns match one of the typed arrays' rows."""
    matches = " AND ".join(f"t.{c} = k.{c}" for c in key)
    return (
        f'DELETE FROM "{schema}".{table} t USING {unnest(key)} AS k({columns_of(key)}) '
        f"WHERE {matches}"
    )


def coalesced(messages: Iterable[Message]) -> dict[bytes, bytes | None]:
    """The newest value per key (a tombstone is None); keyless records are skipped."""
    latest: dict[bytes, bytes | None] = {}
    for message in messages:
        key = message.key()
        if key is not None:
            latest[key] = message.value()
    return latest


def bin_key_of(key: bytes) -> tuple[str, str, datetime] | None:
    """The ``bins`` primary key a metrics key ``project/model/<hour>`` names; None for a
    foreign key."""
    model, _, hour = key.decode(errors="replace").rpartition("/")
    if not model or not hour.isdigit():
        return None
    project_id, model_id = split_model_key(model)
    try:
        return project_id, model_id, instant(int(hour) * HOUR_MS)
    except OverflowError:  # beyond the year 9999: no bin of ours
        return None


def decoded(key: bytes, value: bytes, decode: Callable[[bytes], T], what: str) -> T:
    """A record's value decoded; ``RefusedError`` (not a crash) for one that is no ``what``."""
    try:
        return decode(value)
    except (ValueError, LookupError, TypeError, AttributeError, ArithmeticError) as error:
        raise RefusedError(f"not {what} ({key!r}): {error}") from None


# A bin's row and its metrics' rows.
BinRowSet = tuple[BinRow, list[BinMetricRow]]


def _bin_rows(raw: bytes) -> BinRowSet:
    """A metrics document's rows (read whole: a document missing a field is refused)."""
    document = METRICS_VALUE.decode(raw)
    return bin_row(document), bin_metric_rows(document)


_KEY_COLUMNS = {column: BIN_COLUMNS[column] for column in BIN_KEY}


class BinRows:
    """The metrics topic's records as ``bins`` and ``bin_metrics`` rows."""

    def write(self, cursor: Cursor, schema: str, latest: Mapping[bytes, bytes | None]) -> None:
        gone = [pk for key, value in latest.items() if value is None
                if (pk := bin_key_of(key)) is not None]  # fmt: skip
        # By primary key too: one statement may not upsert a row twice (a foreign
        # producer's document under another key).
        written: dict[tuple[Any, ...], BinRowSet] = {}
        for key, value in latest.items():
            if value is not None:
                rows = decoded(key, value, _bin_rows, "a metrics document")
                written[rows[0][: len(BIN_KEY)]] = rows
        if gone:
            # bin_metrics rows go with their bin (ON DELETE CASCADE).
            cursor.execute(
                delete_by_key(schema, "bins", _KEY_COLUMNS), column_arrays(gone, len(BIN_KEY))
            )
        if not written:
            return
        bins = [bin_rows[0] for bin_rows in written.values()]
        cursor.execute(
            upsert(schema, "bins", BIN_COLUMNS, BIN_KEY), column_arrays(bins, len(BIN_COLUMNS))
        )
        # A bin's metrics are replaced whole: a metric gone from a bin is gone here.
        cursor.execute(
            delete_by_key(schema, "bin_metrics", _KEY_COLUMNS),
            column_arrays(list(written), len(BIN_KEY)),
        )
        metrics = [row for _, bin_metrics in written.values() for row in bin_metrics]
        if metrics:
            cursor.execute(
                f'INSERT INTO "{schema}".bin_metrics ({columns_of(BIN_METRIC_COLUMNS)}) '
                f"SELECT * FROM {unnest(BIN_METRIC_COLUMNS)}",
                column_arrays(metrics, len(BIN_METRIC_COLUMNS)),
            )


def _alert_row(raw: bytes) -> AlertRow:
    """An alert record's row (read whole: a record without changes is refused)."""
    return alert_row(ALERT.decode(raw))


class AlertRows:
    """The alerts topic's records as ``alerts`` rows (a tombstone deletes the alert)."""

    def write(self, cursor: Cursor, schema: str, latest: Mapping[bytes, bytes | None]) -> None:
        gone = [(key.decode(errors="replace"),) for key, value in latest.items() if value is None]
        # By the alert's own key too: one statement may not upsert a row twice.
        rows = {
            row.key: row
            for key, value in latest.items()
            if value is not None
            for row in [decoded(key, value, _alert_row, "an alert record")]
        }
        if gone:
            cursor.execute(delete_by_key(schema, "alerts", {"key": "text"}), column_arrays(gone, 1))
        if rows:
            cursor.execute(
                upsert(schema, "alerts", ALERT_COLUMNS, ["key"]),
                column_arrays(list(rows.values()), len(ALERT_COLUMNS)),
            )


class PostgresSink:
    """A topic's rows in PostgreSQL with its partitions' markers (``ProjectionSink``).

    One connection, on the projection's thread, made again after an outage."""

    dependency = "PostgreSQL"
    # Any error but a refused record (``write`` turns those into RefusedError) is waited
    # out: a connection lost, and also a server that refuses us (privileges, read-only)
    # must not take the worker down, and merge and bins with it.
    outage_errors: tuple[type[BaseException], ...] = (psycopg.Error,)

    def __init__(self, url: str, schema: str, topic: str, rows: TableWriter) -> None:
        self._url = url
        self._schema = schema
        self._topic = topic
        self._rows = rows
        self._connection: psycopg.Connection[Any] | None = None

    def markers(self, partitions: Sequence[int]) -> dict[int, int | None]:
        try:
            found = self._transaction(lambda cursor: self._read_markers(cursor, partitions))
        except TablesGoneError:
            self._create_tables()
            found = {}
        return {partition: found.get(partition) for partition in partitions}

    def set_marker(self, partition: int, offset: int) -> None:
        try:
            self._transaction(lambda cursor: self._move_markers(cursor, {partition: offset}))
        except TablesGoneError:
            self._create_tables()
            self._transaction(lambda cursor: self._move_markers(cursor, {partition: offset}))

    def write(self, messages: Sequence[Message], ends: Mapping[int, int]) -> dict[int, int | None]:
        latest = coalesced(messages)

        def work(cursor: Cursor) -> dict[int, int]:
            before = self._read_markers(cursor, list(ends), lock=True)
            self._rows.write(cursor, self._schema, latest)
            self._move_markers(cursor, ends)
            return before

        try:
            before = self._transaction(work)
        except TablesGoneError:
            # Nothing written; no marker: the engine projects every partition again.
            self._create_tables()
            return dict.fromkeys(ends)
        except (psycopg.DataError, psycopg.IntegrityError) as error:
            raise RefusedError(f"PostgreSQL refused the row: {error}") from None
        return {partition: before.get(partition) for partition in ends}

    # --- SQL --------------------------------------------------------------------------

    def _read_markers(
        self, cursor: Cursor, partitions: Sequence[int], lock: bool = False
    ) -> dict[int, int]:
        cursor.execute(
            f'SELECT partition, next_offset FROM "{self._schema}".projected_offsets '
            f"WHERE topic = %s AND partition = ANY(%s){' FOR UPDATE' if lock else ''}",
            (self._topic, list(partitions)),
        )
        return {int(partition): int(offset) for partition, offset in cursor.fetchall()}

    def _move_markers(self, cursor: Cursor, ends: Mapping[int, int]) -> None:
        cursor.execute(
            f'INSERT INTO "{self._schema}".projected_offsets (topic, partition, next_offset) '
            "SELECT %s, * FROM unnest(%s::int[], %s::bigint[]) "
            "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
            (self._topic, list(ends), list(ends.values())),
        )

    def _create_tables(self) -> None:
        """Create the schema and tables where missing. Two creators at the same moment (the
        bins and alerts projections, other workers) can collide in the catalog even with
        IF NOT EXISTS; the one that lost looks again and finds them."""

        def create(cursor: Cursor) -> None:
            for statement in ddl(self._schema):
                cursor.execute(statement)

        for attempt in range(CREATE_ATTEMPTS):
            try:
                self._transaction(create)
                return
            except _CREATED_MEANWHILE:
                if attempt == CREATE_ATTEMPTS - 1:
                    raise

    def _transaction(self, work: Callable[[Cursor], T]) -> T:
        """``work`` in one transaction; TablesGoneError when a table is missing. Any other
        error drops the connection, so that the next attempt starts on a new one."""
        connection = self._connected()
        try:
            with connection.transaction(), connection.cursor() as cursor:
                return work(cursor)
        except _TABLES_GONE as error:
            raise TablesGoneError(str(error)) from None
        except self.outage_errors:
            connection.close()
            self._connection = None
            raise

    def _connected(self) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(self._url, connect_timeout=5)
            # Transactions are explicit (``_transaction``); outside them, nothing is held.
            self._connection.autocommit = True
            # No WAL flush wait per batch: the rows are a view of Kafka, and a commit a
            # server crash loses takes its markers with it, so the marker check finds the
            # partition behind and projects it again from there (lost writes, as after a
            # restore from an older backup).
            self._connection.execute("SET synchronous_commit = off")
        return self._connection


def postgres_projection(
    name: str,
    bootstrap_servers: str,
    topic: str,
    group_id: str,
    sink: PostgresSink,
    session_timeout_ms: int,
    dead_letter_topic: str,
    *,
    timed: bool,
) -> Projection:
    """A topic into PostgreSQL; ``timed``: its records are bins whose emission is timed."""
    return Projection(
        name, bootstrap_servers, topic, group_id, sink, session_timeout_ms,
        dead_letter_topic=dead_letter_topic,
        emitted_at_ms=emitted_at_ms if timed else None, delay_label="postgres",
    )  # fmt: skip
