"""The alerts topic ``<prefix>.alerts``: every alert, whole, each time it changes; compacted.

Key: the alert's key (``state.alerts.Alert.key``, text). Value: the alert as
``Alert.to_dict`` writes it, its current state and its history of changes (SCHEMAS.md).
The evaluator writes it in the same Kafka transaction as its own state, so each change is
published exactly once; the notifier and the API's alert listing read it.
"""

from __future__ import annotations

import orjson

from driftline.state.alerts import Alert
from driftline.state.tables import Codec


def _encoded(alert: Alert) -> bytes:
    return orjson.dumps(alert.to_dict())


def _decoded(raw: bytes) -> Alert:
    """An alert; ``ValueError`` for bytes that are not one (orjson's error is one)."""
    try:
        return Alert.from_dict(orjson.loads(raw))
    except (KeyError, TypeError) as error:
        raise ValueError(f"not an alert record: {error}") from None


ALERT: Codec[Alert] = Codec(_encoded, _decoded)
