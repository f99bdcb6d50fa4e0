"""A batch's changelog records, outputs and input offsets in one Kafka transaction.

Without it a crash could lose outputs: the checkpoint that skips a batch's input could be
written while its dead letters, bin snapshots or deletion continuations were not, and a
restart resumed past them. In one transaction they are all visible or none is (every
reader of Driftline's topics reads committed data only), so a batch counts as done only
once everything it produced is durable — Kafka Streams' exactly-once v2: one
transactional producer per runner, the input offsets sent with the transaction, zombie
workers fenced by the consumer group's generation.

Measured on this machine (``benchmarks/metrics.py``, before and after): see the
README's performance table. A commit costs ~15-30 ms with a short retry backoff (librdkafka's
default 100 ms backoff made it ~100 ms: the broker answers the next batch's first write
with CONCURRENT_TRANSACTIONS while it still writes the previous batch's markers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer, TopicPartition

from agents.outages import OutageLog
from topics.producer import producer_config

log = logging.getLogger(__name__)

# Errors that say a record itself cannot be written (its size, its form): retrying the
# same batch would fail forever, so the input that produced the record is poison.
CONTENT_ERRORS = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_TIMESTAMP,
    }
)

# A dead worker's open transaction holds back readers of every partition it wrote to
# until the broker aborts it; a worker restarted on the same data directory fences it at
# once (its transactional id is stable). Batches commit in well under a second.
TRANSACTION_TIMEOUT_MS = 20_000
_CALL_TIMEOUT_S = 30.0


class NotCommittedError(Exception):
    """The batch was not committed (an outage, partitions lost to a rebalance): nothing of
    it happened, and its input is to be consumed again."""


class RecordRefusedError(Exception):
    """A record the batch produced was refused for what it is: its input is poison."""


class BatchTransactions:
    """The transactional producer of one runner, kept usable through any failure."""

    def __init__(self, bootstrap_servers: str, transactional_id: str, outage: OutageLog) -> None:
        self._config = producer_config(
            bootstrap_servers,
            on_delivery=self._on_delivery,
            **{
                "transactional.id": transactional_id,
                "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                "message.timeout.ms": TRANSACTION_TIMEOUT_MS,
                "linger.ms": 1,
                "retry.backoff.ms": 5,
                "retry.backoff.max.ms": 20,
            },
        )
        self._producer: Producer | None = None
        self._delivery_errors: list[KafkaError] = []
        self._outage = outage

    def start(self, stop: threading.Event) -> bool:
        """Create the producer and fence any earlier instance of it; waits out an outage.

        False if ``stop`` was set first.
        """
        while not stop.is_set():
            producer = Producer(self._config)
            try:
                producer.init_transactions(_CALL_TIMEOUT_S)
            except KafkaException as error:
                stop.wait(self._outage.failed(error))
                continue
            self._producer = producer
            self._outage.succeeded()
            return True
        return False

    def begin(self) -> None:
        self._delivery_errors.clear()
        self._live.begin_transaction()

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        partition: int = -1,
        timestamp: int = 0,
    ) -> None:
        producer = self._live
        while True:
            try:
                producer.produce(
                    topic, value, key, partition=partition, headers=headers, timestamp=timestamp
                )
                return
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries make room

    def commit(self, offsets: list[TopicPartition], group_metadata: Any) -> None:
        producer = self._live
        if offsets:
            producer.send_offsets_to_transaction(offsets, group_metadata, _CALL_TIMEOUT_S)
        producer.commit_transaction(_CALL_TIMEOUT_S)

    def failed(self, error: KafkaException) -> Exception:
        """After a KafkaException anywhere in a transaction: abort it (or replace the
        producer if it cannot go on) and say what the runner is to do."""
        cause: KafkaError = error.args[0]
        refused = [e for e in (cause, *self._delivery_errors) if e.code() in CONTENT_ERRORS]
        self._abort(cause)
        if refused:
            return RecordRefusedError(refused[0].str())
        return NotCommittedError(cause.str())

    def _abort(self, cause: KafkaError) -> None:
        producer = self._live
        while not cause.fatal():
            try:
                producer.abort_transaction(_CALL_TIMEOUT_S)
                return
            except KafkaException as error:
                cause = error.args[0]
                if cause.code() == KafkaError._STATE:
                    return  # no transaction was open
                if not cause.fatal():
                    time.sleep(self._outage.failed(cause))
        # A fatal error (fenced by a newer instance, an unrecoverable producer state):
        # this producer is done; the next batch starts a fresh one.
        log.warning("transactional producer replaced after a fatal error: %s", cause.str())
        producer.purge()
        self._producer = None

    def ensure_started(self, stop: threading.Event) -> bool:
        return self._producer is not None or self.start(stop)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None

    @property
    def _live(self) -> Producer:
        if self._producer is None:
            raise KafkaException(KafkaError(KafkaError._STATE, "no transactional producer"))
        return self._producer

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._delivery_errors.append(error)
