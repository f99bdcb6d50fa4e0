"""The notifier: every alert change on the alerts topic, sent to its rule's channels.

It reads the alerts topic (``<prefix>.alerts``; group ``Topics.notifier_group``, read
committed: the evaluator writes in transactions), looks up each alert's rule in the rules
topic (a deleted rule notifies only the resolutions its deletion causes) and hands one
delivery per channel to that channel's sender (``ChannelSenders``). The requests
themselves are ``state.notifications``'.

Isolation. Every channel (by URL) has its own sender, an asyncio task on the senders'
thread, that posts its deliveries one after the other: each attempt is bounded by the
timeout, failed ones are retried after the backoff, and a delivery still failing after its
last attempt is written to ``<prefix>.notification-dead-letters`` (never with a secret).
So a slow, hanging or failing receiver delays only its own channel's later deliveries,
never another channel nor the consumer, and the batch engines of the worker are other
threads that never wait for this one.

At least once, exactly once at the receiver. An input offset is committed once every
delivery of its message, and of every message before it, is done (delivered or
dead-lettered): a restart (a crash, a rebalance) sends again only what was not done, with
the same ``Idempotency-Key`` (the change id), so a receiver drops what it already got.

Broker outages are waited out: the consumer reconnects by itself, a commit or a dead
letter that fails is tried again, and deliveries go on meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from driftline.state.alert_evaluation import Change
from driftline.state.alert_rules import Channel, InvalidAlertRuleError, record_channels
from driftline.state.alerts import Alert
from driftline.state.notifications import Notification, notification, retry_delays
from driftline.topics.alert_rules import AlertRules
from driftline.topics.catalog import Topics
from driftline.topics.clients import consumer_config
from driftline.topics.outages import OutageLog
from driftline.topics.producer import producer_config
from driftline.topics.service_metrics import NOTIFICATIONS

log = logging.getLogger(__name__)

# Client errors a receiver may get over by itself (timeout, too early, too many requests):
# retried; any other 4xx says the request itself is refused, and is dead-lettered at once.
_RETRIED_CLIENT_ERRORS = frozenset({408, 425, 429})

# Deliveries one channel may have waiting; past it a new one is dead-lettered at once. A
# receiver that hangs takes its timeout times its attempts per delivery, and a burst of
# alerts would otherwise queue in memory without end.
CHANNEL_BACKLOG = 1000


class _StopRequestedError(Exception):
    """The notifier was stopped while it waited for the broker."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One change for one channel, and the input message (of one assignment) it came from."""

    partition: int
    offset: int
    generation: int
    alert_key: str
    change_id: str
    rule_key: str
    channel_index: int
    channel: Channel
    request: Notification


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a delivery ended: ``error`` None when the receiver took it."""

    delivery: Delivery
    attempts: int
    error: str | None


def dead_letter(outcome: Outcome, failed_at_ms: int) -> dict[str, Any]:
    """The dead letter of a delivery given up on: the change, the rule and which of its
    channels, the attempts and the last failure. The channel's URL is cut to its origin:
    an incoming-webhook URL (Slack's) is itself a credential."""
    delivery = outcome.delivery
    return {
        "change_id": delivery.change_id,
        "alert_key": delivery.alert_key,
        "rule_key": delivery.rule_key,
        "channel": {
            "index": delivery.channel_index,
            "type": delivery.channel.type.value,
            "origin": _origin(delivery.channel.url),
        },
        "attempts": outcome.attempts,
        "error": outcome.error,
        "failed_at_ms": failed_at_ms,
    }


def count_outcome(outcome: Outcome) -> None:
    """The notifications counter for a delivery that ended: its attempts after the first
    were retries; then it was delivered, or given up on (dead-lettered)."""
    channel_type = outcome.delivery.channel.type.value
    if outcome.attempts > 1:
        NOTIFICATIONS.labels(channel_type, "retried").inc(outcome.attempts - 1)
    result = "delivered" if outcome.error is None else "dead_lettered"
    NOTIFICATIONS.labels(channel_type, result).inc()


def _origin(url: str) -> str:
    """``scheme://host[:port]``: without the path, query or credentials of the URL."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


class PendingOffsets:
    """Per partition, the messages read whose deliveries are not all done, and how far
    the group may commit: up to the first message not done (pure; the notifier's thread).

    ``generation`` tells assignments apart: a delivery of a partition revoked and assigned
    again (its messages read again) must not count for the new reading."""

    def __init__(self) -> None:
        self._open: dict[int, dict[int, int]] = {}
        self._next: dict[int, int] = {}
        self._generation: dict[int, int] = {}

    def assigned(self, partition: int, generation: int) -> None:
        self._open[partition] = {}
        self._next.pop(partition, None)
        self._generation[partition] = generation

    def revoked(self, partition: int) -> None:
        self._open.pop(partition, None)
        self._next.pop(partition, None)
        self._generation.pop(partition, None)

    def generation(self, partition: int) -> int | None:
        return self._generation.get(partition)

    def read(self, partition: int, offset: int, deliveries: int) -> None:
        """A message read, with how many deliveries it needs (0: done already)."""
        if partition not in self._open:
            return
        if deliveries:
            self._open[partition][offset] = deliveries
        self._next[partition] = offset + 1

    def done(self, partition: int, offset: int, generation: int) -> None:
        """One delivery of a message is done."""
        if self._generation.get(partition) != generation:
            return
        remaining = self._open[partition].get(offset)
        if remaining is None:
            return
        if remaining > 1:
            self._open[partition][offset] = remaining - 1
        else:
            del self._open[partition][offset]

    def committable(self) -> dict[int, int]:
        """Per partition read from, the offset to commit: the first message not done, or
        the one after the last read."""
        found = {}
        for partition, next_offset in self._next.items():
            waiting = self._open[partition]
            found[partition] = min(waiting) if waiting else next_offset
        return found


class ChannelSenders:
    """One asyncio task per channel URL, on a thread of its own, posting that channel's
    deliveries in order; each delivery's outcome goes to ``report`` (from that thread)."""

    def __init__(
        self,
        timeout_s: float,
        delays: tuple[float, ...],
        report: Callable[[Outcome], None],
        backlog: int = CHANNEL_BACKLOG,
    ) -> None:
        self._timeout_s = timeout_s
        self._delays = delays
        self._report = report
        self._backlog = backlog
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="notifier-senders", daemon=True
        )
        # Touched on the loop only.
        self._queues: dict[str, asyncio.Queue[Delivery]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open_session(), self._loop).result(10)

    def send(self, delivery: Delivery) -> None:
        """Queue ``delivery`` behind its channel's earlier ones (any thread)."""
        self._loop.call_soon_threadsafe(self._enqueue, delivery)

    def stop(self) -> None:
        """Drop what is queued or in flight (not committed: sent again after a restart)."""
        if not self._thread.is_alive():
            return
        closing = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
        try:
            closing.result(10)
        except TimeoutError:
            log.warning("notifier: the channel senders did not stop within 10 s")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    async def _open_session(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))

    async def _close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _enqueue(self, delivery: Delivery) -> None:
        url = delivery.request.url
        channel_queue = self._queues.get(url)
        if channel_queue is None:
            channel_queue = self._queues[url] = asyncio.Queue()
            self._tasks.append(self._loop.create_task(self._serve(channel_queue)))
        if channel_queue.qsize() >= self._backlog:
            reason = f"the channel has {self._backlog:,} deliveries waiting: it is not keeping up"
            self._report(Outcome(delivery, 0, reason))
            return
        channel_queue.put_nowait(delivery)

    async def _serve(self, channel_queue: asyncio.Queue[Delivery]) -> None:
        while True:
            delivery = await channel_queue.get()
            self._report(await self._deliver(delivery))

    async def _deliver(self, delivery: Delivery) -> Outcome:
        """Attempts with the backoff between them, until one succeeds or may not be retried."""
        attempts = 0
        error: str | None = None
        for delay in (0.0, *self._delays):
            await asyncio.sleep(delay)
            attempts += 1
            error, retry = await self._post(delivery.request)
            if error is None or not retry:
                break
        return Outcome(delivery, attempts, error)

    async def _post(self, request: Notification) -> tuple[str | None, bool]:
        """(failure or None, whether to retry it) of one attempt."""
        assert self._session is not None
        try:
            async with self._session.post(
                request.url, data=request.body, headers=dict(request.headers),
                allow_redirects=False,
            ) as response:  # fmt: skip
                status = response.status
        except TimeoutError:
            return f"no answer within {self._timeout_s:g} s", True
        except aiohttp.ClientError as error:
            return f"{type(error).__name__}: {error}", True
        if 200 <= status < 300:
            return None, False
        return f"HTTP {status}", not 400 <= status < 500 or status in _RETRIED_CLIENT_ERRORS


class Notifier:
    """The runner (``agents.threads.Runner``): consumes alerts, commits what is done."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Topics,
        timeout_s: float,
        attempts: int,
        backoff_base_s: float,
        session_timeout_ms: int,
    ) -> None:
        self.name = "notifier"
        self._topics = topics
        self._rules = AlertRules(bootstrap_servers, topics.alert_rules.name)
        # A report for every dead letter, written or not: only a written one is done.
        self._producer = Producer(
            producer_config(bootstrap_servers, **{"delivery.report.only.error": False})
        )
        self._consumer = Consumer(
            consumer_config(
                bootstrap_servers,
                topics.notifier_group,
                **{
                    "fetch.wait.max.ms": 10,
                    "session.timeout.ms": session_timeout_ms,
                    "heartbeat.interval.ms": max(500, session_timeout_ms // 5),
                },
            )
        )
        self._outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._senders = ChannelSenders(
            timeout_s, retry_delays(attempts, backoff_base_s), self._outcomes.put
        )
        self._pending = PendingOffsets()
        self._generations = 0
        self._committed: dict[int, int] = {}
        # Failed deliveries whose dead letter is still to be produced (again).
        self._failed: list[Outcome] = []
        self._outage = OutageLog(log, self.name, "Kafka", "notifications wait meanwhile")
        self._retry_at = 0.0
        self._stop = threading.Event()

    def run(self) -> None:
        self._senders.start()
        self._consumer.subscribe(
            [self._topics.alerts.name], on_assign=self._assigned, on_revoke=self._revoked,
            on_lost=self._revoked,
        )  # fmt: skip
        try:
            self._consume_until_stopped()
            self._producer.flush(5.0)  # dead letters under way: written, they are done
            self._settle()
            self._commit()
        finally:
            self._senders.stop()
            self._close()

    def stop(self) -> None:
        self._stop.set()

    def _consume_until_stopped(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
        except _StopRequestedError:
            pass  # stopped while waiting for the broker: that message is read again

    def _step(self) -> None:
        # The first message ends the wait, and those fetched with it join it.
        messages = self._consumer.consume(1, 0.05)
        if messages:
            messages.extend(self._consumer.consume(99, 0))
        for message in messages:
            if message.error() is None:
                self._read(message)
        self._settle()
        self._commit()

    # --- reading ------------------------------------------------------------------------

    def _read(self, message: Message) -> None:
        partition, offset = message.partition(), message.offset()
        if partition is None or offset is None:
            return
        generation = self._pending.generation(partition)
        if generation is None:
            return
        deliveries = list(self._deliveries(message, partition, offset, generation))
        self._pending.read(partition, offset, len(deliveries))
        for delivery in deliveries:
            self._senders.send(delivery)

    def _deliveries(
        self, message: Message, partition: int, offset: int, generation: int
    ) -> Iterable[Delivery]:
        raw = message.value()
        if raw is None:  # a tombstone: nothing changed
            return ()
        try:
            alert = self._topics.alerts.value.decode(raw)
        except ValueError as error:
            log.warning("%s: alerts offset %d is not an alert (%s); skipped", self.name,
                        offset, error)  # fmt: skip
            return ()
        return (
            Delivery(partition, offset, generation, alert.key, alert.change_id, alert.rule_key,
                     index, channel, notification(alert, channel))
            for index, channel in enumerate(self._channels(alert))
        )  # fmt: skip

    def _channels(self, alert: Alert) -> tuple[Channel, ...]:
        """The channels of the alert's rule as it is now. A deleted rule notifies no one,
        but of the resolutions its deletion causes (its PagerDuty incidents would stay
        open otherwise): those go to the channels it had."""
        if alert.last_change.change is Change.RESOLVED:
            record = self._waiting_out(lambda: self._rules.last(alert.rule_key))
        else:
            record = self._waiting_out(lambda: self._rules.get(alert.rule_key))
        if record is None:
            return ()
        try:
            return record_channels(record)
        except InvalidAlertRuleError as error:
            log.warning("%s: rule %s has channels no rule can have (%s); not notified",
                        self.name, alert.rule_key, error)  # fmt: skip
            return ()

    def _waiting_out(self, read: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
        """``read`` once the broker answers (a rule is needed to go on)."""
        while True:
            try:
                found = read()
            except KafkaException as error:
                if self._stop.wait(self._outage.failed(error)):
                    raise _StopRequestedError from error
                continue
            self._outage.succeeded()
            return found

    # --- outcomes, dead letters, commits ------------------------------------------------

    def _settle(self) -> None:
        """Count delivered ones as done; dead-letter the failed ones (done once written)."""
        while not self._outcomes.empty():
            outcome = self._outcomes.get_nowait()
            count_outcome(outcome)
            if outcome.error is None:
                self._done(outcome)
            else:
                delivery = outcome.delivery
                log.warning("%s: %s to channel %d of %s failed after %d attempts (%s); "
                            "dead-lettered", self.name, delivery.change_id,
                            delivery.channel_index, delivery.rule_key, outcome.attempts,
                            outcome.error)  # fmt: skip
                self._failed.append(outcome)
        if self._failed and time.monotonic() >= self._retry_at:
            self._produce_dead_letters()
        self._producer.poll(0)  # the delivery reports: ``_dead_letter_written``

    def _produce_dead_letters(self) -> None:
        spec = self._topics.notification_dead_letters
        now_ms = int(time.time() * 1000)
        for outcome in self._failed:
            self._producer.produce(
                spec.name, spec.value.encode(dead_letter(outcome, now_ms)),
                spec.key.encode(outcome.delivery.change_id),
                on_delivery=partial(self._dead_letter_written, outcome),
            )  # fmt: skip
        self._failed.clear()

    def _dead_letter_written(
        self, outcome: Outcome, error: KafkaError | None, message: Message
    ) -> None:
        """A dead letter's delivery report: written, its delivery is done; not written (the
        broker away past the producer's timeout), it is produced again after a backoff."""
        if error is None:
            self._outage.succeeded()
            self._done(outcome)
        else:
            self._retry_at = time.monotonic() + self._outage.failed(error.str())
            self._failed.append(outcome)

    def _done(self, outcome: Outcome) -> None:
        delivery = outcome.delivery
        self._pending.done(delivery.partition, delivery.offset, delivery.generation)

    def _commit(self) -> None:
        due = [
            TopicPartition(self._topics.alerts.name, partition, offset)
            for partition, offset in self._pending.committable().items()
            if offset > self._committed.get(partition, -1)
        ]
        if not due:
            return
        try:
            self._consumer.commit(offsets=due, asynchronous=False)
        except KafkaException as error:
            # Tried again on the next step; meanwhile a restart would only send more twice.
            log.debug("%s: commit: %s", self.name, error)
            return
        self._committed.update((tp.partition, tp.offset) for tp in due)

    # --- assignment ---------------------------------------------------------------------

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._generations += 1
            self._pending.assigned(tp.partition, self._generations)
            self._committed.pop(tp.partition, None)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Commit what is done; deliveries still under way are sent again by the next owner."""
        self._settle()
        self._commit()
        for tp in partitions:
            self._pending.revoked(tp.partition)
            self._committed.pop(tp.partition, None)

    def _close(self) -> None:
        for close in (self._consumer.close, self._rules.close):
            try:
                close()
            except KafkaException as error:
                log.warning("%s: closing: %s", self.name, error)
