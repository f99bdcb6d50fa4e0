"""The fault suite's traffic: one mixed stream of valid operations, kept in step with the
plain-Python model, and the bad messages with the dead letter each must leave.

Valid operations: inserts (some with integers beyond 64 bits, a column the spec does not
name, a mistyped value, a 50 KB event id), late labels, metadata updates, moved
timestamps, retried and replacing inserts, deletes by id, updates sent just before their
insert; some events' messages all go through librdkafka's default partitioner (CRC32)
and arrive off their key's partition. The generator keeps the stream within what the
model can predict exactly: every message of one event goes through one partitioner, and
nothing is sent into a time range once its deletion is on its way (SCHEMAS: "may or may
not be deleted").

Bad messages: the issue's poison shapes (a value nested 300 deep, ~200 KB updates for ids
never inserted, a 1,040,024-byte insert, an unregistered model) and fuzz (not JSON, not
an object, unknown ops, missing or ill-typed fields, empty, foreign and huge keys,
tombstones, malformed deletion commands). Each is unique (a nonce in its key or value),
so that its dead letter is found by key and value and counted.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from driftline.state.bins import HOUR_MS
from driftline.topics.messages import encode_delete, encode_ingest, ingest_key
from tests.support.models import CHURN_SPEC, HOUR0
from tests.support.reference_model import ReferenceEvents
from tests.support.values import nested

PROJECT, MODEL = "shop", "churn"
HOURS = 8
# Hours 3 and 4 are deleted by time range mid-stream.
DELETED_FROM, DELETED_TO = HOUR0 + 3 * HOUR_MS, HOUR0 + 5 * HOUR_MS

# Reasons, as SCHEMAS.md lists them (the part that does not depend on the message).
NOT_JSON = "value is not valid JSON"
NOT_OBJECT = "value must be a JSON object"
NO_VALUE = "empty message value"
BAD_OP = "'op' must be one of"
TOO_DEEP = "levels deep"
TOO_BIG = "exceeds the limit of"
BAD_KEY = "message key must be"
UNREGISTERED = "is not registered"
NEVER_INSERTED = "its insert never arrived"
BAD_TIMESTAMP = "'event_timestamp' must be UTC milliseconds"
BAD_EVENT = "a JSON object of column values"
BAD_EVENT_ID = "needs 'event_id', a non-empty string"
BAD_FLAG = "'update_metrics' must be true or false"
BAD_DELETION_KEY = "message must be keyed"
BAD_DELETION_ID = "needs 'deletion_id'"
BAD_EVENT_IDS = "delete_ids needs 'event_ids'"
BAD_RANGE = "delete_range needs"

# A Kafka record's limit on the ingest topic is the broker's default, 1,048,588 bytes.
NEAR_RECORD_LIMIT = 1_040_024


@dataclass(frozen=True)
class Produced:
    key: bytes | None
    value: bytes | None
    crc32: bool = False  # through librdkafka's default partitioner, not murmur2


@dataclass(frozen=True)
class Bad:
    message: Produced
    reason: str  # a part of the dead letter's reason

    @property
    def letter(self) -> tuple[bytes, bytes | None]:
        """How its dead letter is found: key (none and empty alike) and value."""
        return self.message.key or b"", self.message.value


class MixedStream:
    def __init__(self, rng: random.Random, parked_limit: int, max_event_bytes: int) -> None:
        self.rng = rng
        self.model = ReferenceEvents.for_spec(CHURN_SPEC, parked_limit)
        self._max_event_bytes = max_event_bytes
        self._count = 0
        self._live: list[str] = []
        self._where: dict[str, int] = {}
        self._crc32: set[str] = set()
        self._inserts: dict[str, tuple[bytes, dict[str, Any], int]] = {}
        self._range_sent = False

    # --- valid operations ----------------------------------------------------------

    def chunk(self, count: int, bad: list[Bad]) -> list[Produced]:
        """``count`` valid messages (the model applies each as it is made), ``bad`` among them."""
        out: list[Produced] = []
        owed: list[tuple[int, str]] = []  # (when, event id): inserts of updates sent ahead
        while len(out) < count or owed:
            if owed and (owed[0][0] <= len(out) or len(out) >= count):
                out.append(self._insert(owed.pop(0)[1]))
                continue
            roll = self.rng.random()
            if not self._live or roll < 0.33:
                out.append(self._insert(self._new_id()))
            elif roll < 0.36:
                event_id = self._new_id()
                out.append(
                    self._update(event_id, self._label_columns(), self._maybe_time(event_id))
                )
                owed.append((len(out) + self.rng.randrange(1, 40), event_id))
                owed.sort()
            else:
                out.append(self._on_live(roll))
        for item in bad:
            out.insert(self.rng.randrange(len(out) + 1), item.message)
        return out

    def _on_live(self, roll: float) -> Produced:
        event_id = self._live[self.rng.randrange(len(self._live))]
        if roll < 0.58:  # a late label, sometimes with a column updates may not change
            columns = self._label_columns()
            if self.rng.random() < 0.1:
                columns["score"] = 0.5
            return self._update(event_id, columns, None)
        if roll < 0.68:
            return self._update(event_id, {"note": self._note()}, None)
        if roll < 0.75:  # a moved timestamp
            return self._update(event_id, self._label_columns(), self._time(event_id))
        if roll < 0.83:  # a producer's retry: the same bytes again
            value, columns, timestamp = self._inserts[event_id]
            if self._range_sent and DELETED_FROM <= timestamp < DELETED_TO:
                return self._insert(event_id)  # not into the deleted range (moved out since)
            self.model.insert(event_id, columns, timestamp)
            return self._message(event_id, value)
        if roll < 0.91:  # a replacing insert
            return self._insert(event_id)
        self._forget(event_id)
        self.model.delete(event_id)
        return self._message(event_id, encode_delete(PROJECT, MODEL, event_id, update_metrics=True))

    def _insert(self, event_id: str) -> Produced:
        columns = self._columns()
        timestamp = self._time(event_id)
        value = encode_ingest("insert", PROJECT, MODEL, event_id, columns, timestamp)
        self.model.insert(event_id, columns, timestamp)
        self._inserts[event_id] = (value, columns, timestamp)
        if event_id not in self._where:
            self._where[event_id] = len(self._live)
            self._live.append(event_id)
        return self._message(event_id, value)

    def _update(self, event_id: str, columns: dict[str, Any], timestamp: int | None) -> Produced:
        self.model.update(event_id, columns, timestamp)
        value = encode_ingest("update", PROJECT, MODEL, event_id, columns, timestamp)
        return self._message(event_id, value)

    def _message(self, event_id: str, value: bytes) -> Produced:
        key = ingest_key(PROJECT, MODEL, event_id)
        return Produced(key, value, crc32=event_id in self._crc32)

    def _new_id(self) -> str:
        self._count += 1
        event_id = f"e{self._count}"
        if self.rng.random() < 0.002:
            event_id += "-" + "k" * 50_000  # a huge key, yet a valid one
        if self.rng.random() < 0.12:
            self._crc32.add(event_id)
        return event_id

    def _forget(self, event_id: str) -> None:
        index = self._where.pop(event_id)
        last = self._live.pop()
        if last != event_id:
            self._live[index] = last
            self._where[last] = index

    def _columns(self) -> dict[str, Any]:
        rng = self.rng
        columns: dict[str, Any] = {
            "age": rng.randint(18, 90), "plan": rng.choice(["free", "pro", "team", "gold"]),
            "score": rng.random(), "churned": rng.choice([None, None, 0, 1]),
        }  # fmt: skip
        roll = rng.random()
        if roll < 0.05:
            columns["note"] = 2**64 + rng.randrange(2**70)  # beyond 64 bits: kept exactly
        elif roll < 0.07:
            columns["age"] = -(2**65) - rng.randrange(1000)
        elif roll < 0.09:
            columns["age"] = "thirty"  # a type mismatch: kept, counted
        elif roll < 0.11:
            columns["score"] = None
        elif roll < 0.3:
            columns["note"] = self._note()
        if rng.random() < 0.05:
            columns["extra"] = rng.randrange(10)  # not in the spec: dropped
        return columns

    def _label_columns(self) -> dict[str, Any]:
        return {"churned": self.rng.choice([0, 1, 1, None])}

    def _note(self) -> Any:
        roll = self.rng.random()
        if roll < 0.2:
            return None
        if roll < 0.4:
            return 2**80 + self.rng.randrange(10**6)
        return f"n{self.rng.randrange(10**6)}"

    def _time(self, event_id: str) -> int:
        """Never inside the deleted range once its deletion is sent, and never for an
        event whose messages are forwarded (a forward may reach its partition after the
        range deletion, which it preceded)."""
        while True:
            timestamp = HOUR0 + self.rng.randrange(HOURS * HOUR_MS)
            inside = DELETED_FROM <= timestamp < DELETED_TO
            if not inside or not (self._range_sent or event_id in self._crc32):
                return timestamp

    def _maybe_time(self, event_id: str) -> int | None:
        return self._time(event_id) if self.rng.random() < 0.3 else None

    # --- deletions of many events ----------------------------------------------------

    def delete_ids(self, count: int) -> list[str]:
        """Ids for a delete_ids request: events on their key's partition (a forwarded
        message could reach its partition after the request that followed it)."""
        chosen = [e for e in self._live if e not in self._crc32][:count]
        for event_id in chosen:
            self._forget(event_id)
            self.model.delete(event_id)
        return chosen

    def delete_range(self) -> tuple[int, int]:
        self._range_sent = True
        doomed = [e for e, (ts, _) in self.model.events.items() if DELETED_FROM <= ts < DELETED_TO]
        for event_id in doomed:
            self._forget(event_id)
            self.model.delete(event_id)
        return DELETED_FROM, DELETED_TO

    # --- bad messages --------------------------------------------------------------

    def poison(self, ghosts: int, oversized: int) -> list[Bad]:
        """The issue's shapes: each once crash-looped or stalled a partition."""
        bad = [self._deep(f"deep-{i}", "note", 300) for i in range(3)]
        for i in range(ghosts):
            event_id = f"ghost-{i}"
            for j in range(2):
                columns = {"note": f"{j}" * 200_000}
                value = encode_ingest("update", PROJECT, MODEL, event_id, columns)
                self.model.update(event_id, columns, None)  # waits in the model for ever
                key = ingest_key(PROJECT, MODEL, event_id)
                bad.append(Bad(Produced(key, value, crc32=i % 3 == 0), NEVER_INSERTED))
        for i in range(oversized):
            event_id = f"big-{i}"
            empty = encode_ingest("insert", PROJECT, MODEL, event_id, {"note": ""}, HOUR0)
            fill = "x" * (NEAR_RECORD_LIMIT - len(empty))
            value = encode_ingest("insert", PROJECT, MODEL, event_id, {"note": fill}, HOUR0)
            assert len(value) == NEAR_RECORD_LIMIT
            bad.append(Bad(Produced(ingest_key(PROJECT, MODEL, event_id), value), TOO_BIG))
        for i in range(4):
            value = encode_ingest("insert", PROJECT, "unregistered", f"u{i}", {"age": 3}, HOUR0)
            key = ingest_key(PROJECT, "unregistered", f"u{i}")
            bad.append(Bad(Produced(key, value, crc32=i % 2 == 0), UNREGISTERED))
        return bad

    def fuzz(self, count: int) -> list[Bad]:
        shapes: list[Callable[[str], Bad]] = [
            self._not_json, self._truncated, self._bad_utf8, self._not_object, self._tombstone,
            self._bad_op, self._bad_envelope, self._bad_event, self._bad_timestamp,
            self._bad_flag, self._bad_key, self._bad_deletion, self._fuzz_deep,
            self._unregistered, self._too_big,
        ]  # fmt: skip
        # Values and keys of hundreds of KB are rarer: they are all read back at the end.
        weights = [0.1 if shape == self._too_big else 1.0 for shape in shapes]
        out = []
        for i in range(count):
            bad = self.rng.choices(shapes, weights)[0](f"z{i}")
            crc32 = self.rng.random() < 0.3
            out.append(Bad(Produced(bad.message.key, bad.message.value, crc32), bad.reason))
        return out

    def _object(self, nonce: str, **fields: Any) -> bytes:
        """A message as a JSON object (the standard library: any depth, any field value)."""
        message = {"op": "insert", "project_id": PROJECT, "model_id": MODEL,
                   "event_id": nonce, "event": {"age": 30}, "nonce": nonce}  # fmt: skip
        message.update(fields)
        return json.dumps({k: v for k, v in message.items() if v is not _MISSING}).encode()

    def _key(self, nonce: str) -> bytes:
        return ingest_key(PROJECT, MODEL, nonce)

    def _not_json(self, nonce: str) -> Bad:
        junk = self.rng.randbytes(self.rng.randrange(0, 200))
        return Bad(Produced(self._key(nonce), b"\xfe" + nonce.encode() + junk), NOT_JSON)

    def _truncated(self, nonce: str) -> Bad:
        whole = self._object(nonce)
        return Bad(Produced(self._key(nonce), whole[: self.rng.randrange(1, len(whole))]), NOT_JSON)

    def _bad_utf8(self, nonce: str) -> Bad:
        value = self._object(nonce, event={"plan": "\ufffd"}).replace(b"\\ufffd", b"\xff\xfe")
        return Bad(Produced(self._key(nonce), value), NOT_JSON)

    def _not_object(self, nonce: str) -> Bad:
        value = self.rng.choice(
            [f'["{nonce}"]', f'"{nonce}"', "true", "null", "12.5", str(10**30), "[]"]
        ).encode()
        return Bad(Produced(self._key(nonce), value), NOT_OBJECT)

    def _tombstone(self, nonce: str) -> Bad:
        return Bad(Produced(self._key(nonce), None), NO_VALUE)

    def _bad_op(self, nonce: str) -> Bad:
        op = self.rng.choice(["upsert", "", "INSERT", 7, None, ["insert"], _MISSING])
        return Bad(Produced(self._key(nonce), self._object(nonce, op=op)), BAD_OP)

    def _bad_envelope(self, nonce: str) -> Bad:
        wrong: list[Any] = [5, "", "a/b", None, ["x"], _MISSING]
        field = self.rng.choice(["project_id", "model_id", "event_id"])
        if field == "event_id":
            # Not an integer: an integer id is read as its decimal string.
            values, reason = ["", None, 1.5, True, [], {}, _MISSING], BAD_EVENT_ID
        else:
            values, reason = wrong, f"{field!r} must be a non-empty string"
        fields = {field: self.rng.choice(values), "op": self.rng.choice(["insert", "update"])}
        return Bad(Produced(self._key(nonce), self._object(nonce, **fields)), reason)

    def _bad_event(self, nonce: str) -> Bad:
        event = self.rng.choice([_MISSING, None, [1], "x", 3])
        op = self.rng.choice(["insert", "update"])
        return Bad(Produced(self._key(nonce), self._object(nonce, op=op, event=event)), BAD_EVENT)

    def _bad_timestamp(self, nonce: str) -> Bad:
        timestamp = self.rng.choice(["1750000000000", -5, 1.5, True, {}, [1]])
        value = self._object(nonce, event_timestamp=timestamp)
        return Bad(Produced(self._key(nonce), value), BAD_TIMESTAMP)

    def _bad_flag(self, nonce: str) -> Bad:
        flag = self.rng.choice(["yes", 1, None, [True]])
        value = self._object(nonce, op="delete", update_metrics=flag, event=_MISSING)
        return Bad(Produced(self._key(nonce), value), BAD_FLAG)

    def _bad_key(self, nonce: str) -> Bad:
        key = self.rng.choice(
            [b"", None, self._key(nonce + "x"), ingest_key(PROJECT, "other", nonce),
             nonce.encode()]
        )  # fmt: skip
        if self.rng.random() < 0.05:
            key = b"h" * self.rng.randrange(100_000, 600_000)
        return Bad(Produced(key, self._object(nonce)), BAD_KEY)

    def _bad_deletion(self, nonce: str) -> Bad:
        model_key = f"{PROJECT}/{MODEL}".encode()
        shapes: list[tuple[bytes, dict[str, Any], str]] = [
            (self._key(nonce), {"op": "delete_ids", "event_ids": ["a"]}, BAD_DELETION_KEY),
            (b"shop", {"op": "delete_continue"}, BAD_DELETION_KEY),
            (model_key, {"op": "delete_ids", "deletion_id": "", "event_ids": ["a"]},
             BAD_DELETION_ID),
            (model_key, {"op": "delete_ids", "event_ids": "a"}, BAD_EVENT_IDS),
            (model_key, {"op": "delete_ids", "event_ids": [1, ""]}, BAD_EVENT_IDS),
            (model_key, {"op": "delete_range", "start_time": 10, "end_time": 10}, BAD_RANGE),
            (model_key, {"op": "delete_range", "start_time": "0", "end_time": 10}, BAD_RANGE),
            (model_key, {"op": "delete_range", "start_time": 0, "end_time": 10,
                         "update_metrics": "true"}, BAD_FLAG),
        ]  # fmt: skip
        key, fields, reason = self.rng.choice(shapes)
        fields = {"deletion_id": nonce, **fields, "event_id": _MISSING, "event": _MISSING}
        return Bad(Produced(key, self._object(nonce, **fields)), reason)

    def _fuzz_deep(self, nonce: str) -> Bad:
        return self._deep(nonce, self.rng.choice(["note", "plan", "unknown"]),
                          self.rng.randrange(70, 400))  # fmt: skip

    def _deep(self, event_id: str, column: str, depth: int) -> Bad:
        value = self._object(event_id, event={"age": 3, column: nested(depth)})
        return Bad(Produced(self._key(event_id), value), TOO_DEEP)

    def _unregistered(self, nonce: str) -> Bad:
        model = self.rng.choice(["nope", "churn ", "CHURN"])
        value = self._object(nonce, model_id=model, event_timestamp=HOUR0)
        return Bad(Produced(ingest_key(PROJECT, model, nonce), value), UNREGISTERED)

    def _too_big(self, nonce: str) -> Bad:
        size = self.rng.randrange(self._max_event_bytes + 1, 400_000)
        value = self._object(nonce, event={"note": "y" * size})
        return Bad(Produced(self._key(nonce), value), TOO_BIG)


class _Missing:
    """A field left out of the message."""


_MISSING: Any = _Missing()
