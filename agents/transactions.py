"""A partition's batch — changelog records, outputs, checkpoint — in one Kafka transaction.

Without it a crash could lose outputs: the checkpoint that skips a batch's input could be
written while its dead letters, bin deltas, deletion continuations or forwarded
messages were not, and a restart resumed past them. In one transaction they are all
visible or none is (every reader of Driftline's topics reads committed data only), so a
batch counts as done only once everything it produced is durable.

One transactional producer per input partition, its id the partition's (Kafka Streams'
first exactly-once design): whoever takes a partition over fences the previous owner — a
crashed worker, or a stalled one that lost the partition — and aborts its open
transaction at once, so readers are not held back behind it and a zombie cannot commit.
The input offsets are not sent with the transaction: librdkafka's
``send_offsets_to_transaction`` can block forever when the group coordinator goes away
(confluentinc/librdkafka#5456, #5511; seen here through a broker restart). The
checkpoint record in the changelog is the position instead (``agents.restore``).

A commit costs ~15-30 ms with a short retry backoff: librdkafka's default 100 ms made it
~100 ms, the broker answering the next transaction's first write with
CONCURRENT_TRANSACTIONS while it still writes the previous one's markers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from driftline.topics.outages import OutageLog
from driftline.topics.producer import produce_with_room, producer_config

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

# A transaction left open (by a process that died mid-commit and did not come back) is
# aborted by the broker after this long; batches commit in well under a second.
TRANSACTION_TIMEOUT_MS = 20_000
_CALL_TIMEOUT_S = 10.0
# An abort that keeps timing out once the broker is back (librdkafka can stay stuck after
# a coordinator restart, confluentinc/librdkafka#3779): the producer is replaced, and the
# new one's init fences the old and aborts its transaction.
_ABORT_ATTEMPTS = 3


class NotCommittedError(Exception):
    """The batch was not committed (an outage, a lost partition): nothing of it happened,
    and its input is to be consumed again."""


class RecordRefusedError(Exception):
    """A record the batch produced was refused for what it is: its input is poison."""


class PartitionTransactions:
    """The transactional producer of one input partition, kept usable through any failure."""

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
        """Create the producer, fencing any earlier holder of the partition and aborting its
        open transaction; waits out an outage. False if ``stop`` was set first."""
        while self._producer is None and not stop.is_set():
            producer = Producer(self._config)
            try:
                producer.init_transactions(_CALL_TIMEOUT_S)
            except KafkaException as error:
                producer.purge()
                stop.wait(self._outage.failed(error))
                continue
            self._producer = producer
        return self._producer is not None

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
        produce_with_room(self._live, topic, key, value, headers, partition, timestamp)

    def commit(self, stop: threading.Event) -> None:
        """Commit, resuming a commit that timed out (the broker away) until it is done.

        librdkafka goes on with a timed-out commit in the background, and refuses an abort
        meanwhile ("Conflicting commit_transaction API call is already in progress"): an
        abort there ended with a replaced producer, whose destruction could block the
        runner for good, and a batch whose outcome nobody knew. So a retriable failure is
        retried until the commit ends either way; only an error that requires an abort, a
        fatal one, or stopping leaves it (``failed`` then aborts or replaces the producer).
        """
        while True:
            try:
                self._live.commit_transaction(_CALL_TIMEOUT_S)
                return
            except KafkaException as error:
                cause: KafkaError = error.args[0]
                if not cause.retriable() or cause.txn_requires_abort() or stop.is_set():
                    raise
                self._outage.failed(error)

    def failed(self, error: KafkaException) -> Exception:
        """After a KafkaException anywhere in a transaction: abort it (or replace the
        producer if it cannot go on) and say what the runner is to do."""
        cause: KafkaError = error.args[0]
        refused = [e for e in (cause, *self._delivery_errors) if e.code() in CONTENT_ERRORS]
        self._abort(cause)
        if refused:
            return RecordRefusedError(refused[0].str())
        return NotCommittedError(cause.str())

    def close(self) -> None:
        if self._producer is not None:
            _retire(self._producer)
            self._producer = None

    def _abort(self, cause: KafkaError) -> None:
        producer = self._producer
        if producer is None:
            return
        for _ in range(_ABORT_ATTEMPTS):
            if cause.fatal():
                break
            try:
                producer.abort_transaction(_CALL_TIMEOUT_S)
                return
            except KafkaException as error:
                cause = error.args[0]
                if cause.code() == KafkaError._STATE:
                    return  # no transaction was open
        # Fenced by a newer holder of the partition, an unrecoverable producer state, or an
        # abort that does not finish: this producer is done; the next batch starts a fresh
        # one, whose init aborts what this one left open.
        log.warning("transactional producer replaced: %s", cause.str())
        self._producer = None
        _retire(producer)

    @property
    def _live(self) -> Producer:
        if self._producer is None:
            raise KafkaException(KafkaError(KafkaError._STATE, "no transactional producer"))
        return self._producer

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._delivery_errors.append(error)


def _retire(producer: Producer) -> None:
    """Drop a producer off the caller's thread: librdkafka's destroy waits for what the
    producer has in flight, which, the broker away, can last as long as the outage; the
    batch path and a rebalance callback must not wait with it. The caller drops its own
    references at once; the retiring thread holds the last one."""
    producer.purge()
    retiring = threading.Thread(
        target=_destroy, args=(producer,), name="producer-retired", daemon=True
    )
    retiring.start()


def _destroy(producer: Producer) -> None:
    producer.flush(1)
    time.sleep(1)  # the caller's references are long gone: the destructor runs here
