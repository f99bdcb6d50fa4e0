"""User data as rows of events: dicts, DataFrames, CSV and Parquet files, each row split
into its event id, time and JSON column values, checked as the worker would check them.

Not a topic format (``topics.messages`` encodes the rows): the client and the CLI publish
and register from these rows, and the REST API reads a registration's baseline upload
with them.

Files are read in chunks so that a large backfill never sits in memory whole. Pandas'
missing values (NaN, NaT, None) become JSON null: an event without ground truth carries
an empty target, never a dummy value.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from driftline.state.commands import event_id_of, nesting_problem
from driftline.state.spec import ModelSpec
from driftline.state.wording import shown

Source = Iterable[Mapping[str, Any]] | pd.DataFrame | str | Path

_CHUNK_ROWS = 50_000
_INT64_LIMIT = 2**63


class InvalidEventError(ValueError):
    """An event the client refuses to send; the message names the row and the problem."""


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    event_id: str
    columns: dict[str, Any]
    timestamp_ms: int | None


def count_rows(source: Source) -> int | None:
    """Rows in a source, when cheap to know (for the progress bar)."""
    if isinstance(source, pd.DataFrame):
        return len(source)
    if isinstance(source, list | tuple):
        return len(source)
    path = Path(source) if isinstance(source, str | Path) else None
    if path is not None and path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except (ValueError, OSError):
            return None  # unreadable: reading it reports why
    return None


def iter_rows(source: Source, text_columns: Iterable[str] = ()) -> Iterator[Any]:
    """The rows of a source, as read (a row that is not a dict is the caller's to refuse).

    ``text_columns`` are read from CSV as text: ids such as ``007`` must not become 7.
    """
    if isinstance(source, pd.DataFrame):
        yield from _frame_rows(source)
    elif isinstance(source, str | Path):
        yield from _file_rows(Path(source), list(text_columns))
    elif isinstance(source, Mapping):
        raise InvalidEventError("publish_events_batch takes many events; use publish_event")
    else:
        yield from source


def _file_rows(path: Path, text_columns: list[str]) -> Iterator[Mapping[str, Any]]:
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.suffix not in {".csv", ".parquet"}:
        raise InvalidEventError(f"unsupported file type '{path.suffix}': use .csv or .parquet")
    try:
        if path.suffix == ".csv":
            text = dict.fromkeys(text_columns, str)
            for chunk in pd.read_csv(path, chunksize=_CHUNK_ROWS, dtype=text):
                yield from _frame_rows(chunk)
        else:
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(path).iter_batches(batch_size=_CHUNK_ROWS):
                yield from _frame_rows(batch.to_pandas())
    except (ValueError, OSError, UnicodeDecodeError) as error:
        # pandas' ParserError/EmptyDataError and pyarrow's ArrowInvalid are ValueErrors.
        raise InvalidEventError(f"cannot read {path}: {error}") from error


def _frame_rows(frame: pd.DataFrame) -> Iterator[Mapping[str, Any]]:
    columns = [str(c) for c in frame.columns]
    for values in frame.itertuples(index=False, name=None):
        yield dict(zip(columns, values, strict=True))


def outgoing_event(
    spec: ModelSpec,
    row: Mapping[str, Any],
    *,
    update: bool,
    event_id: Any = None,
    event_timestamp: Any = None,
    where: str = "event",
) -> OutgoingEvent:
    """Split a row into id, time and column values, checking what the wire format needs."""
    if not isinstance(row, Mapping):
        raise InvalidEventError(f"{where}: an event must be a dict, got {type(row).__name__}")
    too_deep = nesting_problem(row)
    if too_deep is not None:
        # Refused here, as the worker would dead-letter it (and as it could not be written:
        # orjson stops at 254 levels, and reading it back would overflow the stack).
        raise InvalidEventError(f"{where}: {too_deep}")
    columns = {str(name): json_value(value, where, str(name)) for name, value in row.items()}
    raw_id = columns.pop(spec.event_id_col, None) if event_id is None else event_id
    columns.pop(spec.event_id_col, None)
    raw_ts = columns.pop(spec.event_ts_col, None)
    if event_timestamp is not None:
        raw_ts = event_timestamp
    if raw_id is None:
        if update:
            raise InvalidEventError(
                f"{where}: an update needs an event id (argument event_id or column "
                f"'{spec.event_id_col}') to find the event it changes"
            )
        raw_id = str(uuid.uuid4())
    return OutgoingEvent(_event_id(raw_id, where), columns, timestamp_ms(raw_ts, where))


def _event_id(value: Any, where: str) -> str:
    """``event_id_of``'s rule, the worker's (a numpy integer unwrapped first); the client
    says which part of it a row broke."""
    value = _unwrapped(value)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEventError(
            f"{where}: event id must be a string or integer, got {shown(value)}"
        )
    event_id = event_id_of(value)
    if event_id is None:
        raise InvalidEventError(f"{where}: event id must be a non-empty string")
    return event_id


def timestamp_ms(value: Any, where: str) -> int | None:
    """UTC milliseconds from an int, an aware datetime or an ISO-8601 string with offset."""
    value = _unwrapped(value)
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidEventError(f"{where}: event timestamp must not be a boolean")
    if isinstance(value, int):
        if not 0 <= value < _INT64_LIMIT:
            raise InvalidEventError(
                f"{where}: event timestamp must be UTC milliseconds from 1970 on, got {value}"
            )
        return value
    if isinstance(value, float) and value.is_integer():
        return timestamp_ms(int(value), where)
    if isinstance(value, str):
        try:
            value = pd.Timestamp(value)
        except ValueError:
            raise InvalidEventError(f"{where}: cannot read {shown(value)} as a timestamp") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidEventError(
                f"{where}: timestamp {value} has no time zone; give UTC milliseconds "
                "or a timezone-aware time"
            )
        return timestamp_ms(int(pd.Timestamp(value).value // 1_000_000), where)
    raise InvalidEventError(
        f"{where}: event timestamp must be UTC milliseconds (int) or a timezone-aware "
        f"datetime, got {shown(value)}"
    )


def json_value(value: Any, where: str, column: str) -> Any:
    """A column value as JSON sees it; numpy scalars unwrap, NaN/NaT become null."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        return value  # any size: the wire format keeps integers exactly (state.exact_json)
    if isinstance(value, float):
        if math.isinf(value):
            raise InvalidEventError(f"{where}: column '{column}' is {value}; JSON has no infinity")
        return None if math.isnan(value) else value
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    plain = _unwrapped(value)
    if plain is not value:
        return json_value(plain, where, column)
    if isinstance(value, list | tuple):
        return [json_value(v, where, column) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v, where, column) for k, v in value.items()}
    raise InvalidEventError(
        f"{where}: column '{column}' has a value of type {type(value).__name__}, which has "
        "no JSON form; send numbers, strings, booleans, lists or null"
    )


def _unwrapped(value: Any) -> Any:
    """numpy scalars (from DataFrames) as the Python values they hold."""
    if hasattr(value, "item") and not isinstance(value, str | bytes | list | dict):
        return value.item()
    return value
