"""What every Driftline Kafka client shares: its configuration and where its logs go.

librdkafka prints each connection failure of each client to stderr; during a broker
outage the dozen clients of a worker wrote thousands of lines. Routed through
``KAFKA_LOG`` instead, a repeated complaint of one client is logged once a minute.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError

KAFKA_LOG = logging.getLogger("driftline.kafka")

# A repeated librdkafka complaint (same client, same facility) is let through this often.
REPEAT_S = 60.0

# The largest record Driftline writes to its own topics (changelogs, bin partials,
# metrics): under the broker's default limit of 1,048,588 bytes per record batch, with
# room for the batch's own overhead. Records derived from a message are checked against
# it before they are produced, so the broker never refuses one (SPEC §5).
RECORD_MAX_BYTES = 1_000_000
# A dead letter carries the original message, which the broker accepted on the ingest
# topic under its own (configurable) limit; the dead-letter topic takes larger records,
# and a dead letter that still does not fit is cut (see ``topics.dead_letters``).
DEAD_LETTER_MAX_BYTES = 8 * 1024 * 1024
# Room for the key, the headers and the protocol's framing around a value.
RECORD_OVERHEAD_BYTES = 64 * 1024
# What a consumer fetches ahead of its application (librdkafka's default: 64 MiB per
# consumer, of which a worker has several). A batch is at most 10,000 messages of a few
# hundred bytes, so 16 MiB is still many batches ahead; with a backlog, the worker's peak
# RSS at 1M-2M stored events was 35-55 MiB lower (benchmarks/memory.py).
CONSUMER_QUEUE_KBYTES = 16 * 1024


class RepeatFilter(logging.Filter):
    """Lets a repeated warning or error (same logger, same message template) through once
    a minute, with how many it held back; other records pass."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[tuple[object, ...], float] = {}
        self._suppressed: dict[tuple[object, ...], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        # confluent-kafka logs ("%s [%s] %s", facility, client name, text), and so does
        # _on_error with the error's name; other libraries repeat their message template.
        if record.msg == _CLIENT_FORMAT and len(args) >= 2:
            key: tuple[object, ...] = (record.name, *args[:2])
        else:
            key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self._last.get(key, -REPEAT_S) < REPEAT_S:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        repeated = self._suppressed.pop(key, 0)
        if repeated:
            record.msg = f"{record.msg} (and {repeated} more like it in the last minute)"
        return True


_CLIENT_FORMAT = "%s [%s] %s"
KAFKA_LOG.addFilter(RepeatFilter())


def _on_error(error: KafkaError) -> None:
    """Client-wide errors (brokers down, transport): transient unless fatal."""
    level = logging.ERROR if error.fatal() else logging.WARNING
    KAFKA_LOG.log(level, _CLIENT_FORMAT, error.name(), "client", error.str())


def client_logging() -> dict[str, Any]:
    return {"logger": KAFKA_LOG, "error_cb": _on_error}


def consumer_config(bootstrap_servers: str, group_id: str, **overrides: Any) -> dict[str, Any]:
    """The configuration of every Driftline consumer; each caller passes only what differs.

    It commits only when told, starts a partition without a committed offset at its
    earliest message, reads only committed transactions, bounds its fetch queue and logs
    through ``KAFKA_LOG``.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # Driftline's own outputs are written in transactions: an aborted batch's
        # records (a crash, an outage) must never be read.
        "isolation.level": "read_committed",
        "queued.max.messages.kbytes": CONSUMER_QUEUE_KBYTES,
        **client_logging(),
    }
    config.update(overrides)
    return config
