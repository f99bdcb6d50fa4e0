"""Alert rules: the compacted topic ``<prefix>.alert-rules``, keyed ``project/model/rule_id``.

A record's value is a rule as ``state.alert_rules.AlertRule.to_dict`` writes it, checked
against its model's spec before it is published (the API does that); a tombstone deletes
the rule. Records are kept here as plain dicts: reading one back into an ``AlertRule``
needs the model's spec, which the reader (the API, later the evaluator) holds.

Each API process keeps an in-memory view of the topic (``AlertRules``) and catches it up
before every read: rules change rarely and are read rarely, so every process answers
with what any process wrote, at the cost of one watermark request per read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from driftline.state.alert_rules import AlertRule
from driftline.state.names import model_key
from driftline.state.tables import TEXT, Codec
from driftline.topics.producer import CheckedProducer
from driftline.topics.views import TopicView, decoded_records

# The fields every rule record has (those a reader lists and keys it by).
_KEY_FIELDS = ("project_id", "model_id", "rule_id")


class AlertRuleConflictError(ValueError):
    """Creating a rule whose id is taken by a different rule of the same model."""


def _encoded_rule(record: Mapping[str, Any]) -> bytes:
    return orjson.dumps(dict(record))


def _decoded_rule(raw: bytes) -> dict[str, Any]:
    """A rule record; ``ValueError`` for one that is not an object naming its rule."""
    record = orjson.loads(raw)
    if not isinstance(record, dict) or any(
        not isinstance(record.get(name), str) for name in _KEY_FIELDS
    ):
        raise ValueError("not an alert rule record")
    return record


# The topic's value: one rule as ``AlertRule.to_dict`` writes it (SCHEMAS.md).
ALERT_RULE: Codec[dict[str, Any]] = Codec(_encoded_rule, _decoded_rule)


def publish_rule(producer: CheckedProducer, topic: str, rule: AlertRule) -> None:
    """Produce and flush (raises ``DeliveryError`` if the broker did not take it)."""
    producer.produce(topic, TEXT.encode(rule.key), ALERT_RULE.encode(rule.to_dict()))
    producer.flush(30.0)


def withdraw_rule(producer: CheckedProducer, topic: str, key: str) -> None:
    """A tombstone: the rule is deleted (compaction drops its records)."""
    producer.produce(topic, TEXT.encode(key), None)
    producer.flush(30.0)


def create_rule(producer: CheckedProducer, topic: str, rules: AlertRules, rule: AlertRule) -> bool:
    """Publish ``rule`` unless its key is taken already; True if published.

    Creating the identical rule again is a no-op (a retried request succeeds); a different
    rule under the same id raises ``AlertRuleConflictError``: replacing is a deliberate
    act (``publish_rule`` through ``PUT``), never the side effect of a create.
    """
    current = rules.get(rule.key)
    if current is not None:
        if current != rule.to_dict():
            raise AlertRuleConflictError(
                f"alert rule {rule.key} exists already and differs from this one; replace "
                "it with PUT, or give this rule another rule_id"
            )
        return False
    publish_rule(producer, topic, rule)
    rules.catch_up()
    return True


class AlertRuleIndex:
    """The rule records by key (pure): what the view has read so far."""

    def __init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}
        # Deleted rules' last records: the resolutions their deletion causes are still
        # notified to their channels (``agents.notifier``).
        self._deleted: dict[str, dict[str, Any]] = {}

    def apply(self, key: str, record: dict[str, Any] | None) -> None:
        if record is None:
            gone = self._records.pop(key, None)
            if gone is not None:
                self._deleted[key] = gone
        else:
            self._records[key] = record
            self._deleted.pop(key, None)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._records.get(key)

    def last(self, key: str) -> dict[str, Any] | None:
        """The rule, or the last record of a deleted one (as far as this index read it)."""
        return self._records.get(key) or self._deleted.get(key)

    def of_model(self, project_id: str, model_id: str) -> list[dict[str, Any]]:
        """The model's rules, by rule id."""
        prefix = model_key(project_id, model_id) + "/"
        found = [record for key, record in self._records.items() if key.startswith(prefix)]
        return sorted(found, key=lambda record: str(record["rule_id"]))


class AlertRules:
    """An in-memory view of the rules topic, caught up before every read."""

    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._index = AlertRuleIndex()
        self._view = TopicView(
            bootstrap_servers, topic, decoded_records(ALERT_RULE, self._index.apply), "alert rules"
        )
        self.catch_up()

    def get(self, key: str, fresh: bool = True) -> dict[str, Any] | None:
        if fresh:
            self.catch_up()
        with self._view.lock:
            return self._index.get(key)

    def last(self, key: str) -> dict[str, Any] | None:
        """The rule, or the last record of a deleted one (``AlertRuleIndex.last``)."""
        self.catch_up()
        with self._view.lock:
            return self._index.last(key)

    def of_model(self, project_id: str, model_id: str, fresh: bool = True) -> list[dict[str, Any]]:
        """The model's rules; ``fresh`` False: as last caught up (a reader that looks up
        many models catches up once, then reads them all)."""
        if fresh:
            self.catch_up()
        with self._view.lock:
            return self._index.of_model(project_id, model_id)

    def catch_up(self, timeout_s: float = 10.0) -> None:
        self._view.catch_up(timeout_s)

    def close(self) -> None:
        self._view.close()
