"""The fault suite (issue "Unattended operation"): one mixed stream, with poison and fuzz
among it, through SIGKILLs at random moments, a broker outage, a Redis kill and a Redis
wipe. Afterwards, checked independently of the agents:

- the stored events equal the plain-Python model (``tests.support.reference_model``);
- every bin in Redis equals the batch recomputation from the stored events;
- every bad message is in the dead-letter topic exactly once, with its reason, and
  nothing else is;
- the worker never died on its own: each process lived until this test killed it;
- Redis holds exactly the metrics topic's last value of every bin.

``make test`` (CI) runs a short version; ``make faults`` (``DRIFTLINE_FAULTS=long``) the
issue's numbers. ``DRIFTLINE_FAULTS_SEED`` replays a run: the seed is printed on failure.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from driftline.client import Driftline
from driftline.settings import Settings
from driftline.stack import LocalKafka, LocalRedis
from driftline.stack.worker import WorkerProcess
from driftline.topics.catalog import Topics
from driftline.topics.dead_letters import DeadLetter, read_dead_letters
from driftline.topics.producer import CheckedProducer
from driftline.topics.waiting import wait_until
from tests.faults.workload import MODEL, PROJECT, Bad, MixedStream, Produced
from tests.support.deletions import (
    deletion_finished,
    deletion_progress,
    send_id_deletion,
    send_range_deletion,
)
from tests.support.hourly_bins import assert_redis_equals_recomputation, redis_matches_topic
from tests.support.models import CHURN_BASELINE, CHURN_SPEC
from tests.support.pipeline import stored_events, wait_for_lag_zero

pytestmark = [pytest.mark.integration, pytest.mark.faults]


@dataclass(frozen=True)
class Scale:
    messages: int  # valid messages in the stream
    kills: int
    outage_s: float
    fuzzed: int
    ghosts: int  # ids never inserted, each with two ~200 KB updates
    oversized: int  # 1,040,024-byte inserts
    timeout_s: int  # the whole test's


SHORT = Scale(messages=12_000, kills=3, outage_s=35, fuzzed=2_000, ghosts=3, oversized=1,
              timeout_s=900)  # fmt: skip
LONG = Scale(messages=60_000, kills=10, outage_s=60, fuzzed=20_000, ghosts=10, oversized=3,
             timeout_s=3600)  # fmt: skip
SCALE = LONG if os.environ.get("DRIFTLINE_FAULTS") == "long" else SHORT
SEED = int(os.environ.get("DRIFTLINE_FAULTS_SEED") or random.randrange(10**9))

# Short enough that the updates of never-inserted ids time out within the test; the
# updates sent just before their insert are sent together with it, well within it.
PARKED_TIMEOUT_S = 20.0


class Workers:
    """The worker processes of the run, one at a time; each must be alive whenever this
    test looks, until the test itself kills it."""

    def __init__(self, start: Callable[..., WorkerProcess], settings: Settings) -> None:
        self._start = start
        self._settings = settings
        self.started: list[int] = []
        self.current = self._started()

    def _started(self) -> WorkerProcess:
        worker = self._start(self._settings)
        assert worker.process is not None
        self.started.append(worker.process.pid)
        return worker

    def assert_alive(self, when: str) -> None:
        process = self.current.process
        assert process is not None
        code = process.poll()
        assert code is None, f"the worker (pid {process.pid}) exited with {code} {when}"

    def kill_and_restart(self) -> None:
        self.assert_alive("before a SIGKILL")
        self.current.kill()
        self.current = self._started()


def publish(settings: Settings, messages: list[Produced]) -> None:
    """Through murmur2 (Driftline's producers, Java clients) or librdkafka's default."""
    topic = Topics.for_settings(settings).ingest.name
    murmur2 = CheckedProducer(settings.bootstrap_servers)
    crc32 = CheckedProducer(settings.bootstrap_servers, partitioner="consistent_random")
    for message in messages:
        (crc32 if message.crc32 else murmur2).produce(topic, message.key, message.value)
    murmur2.flush(120)
    crc32.flush(120)


def dead_letters(settings: Settings) -> list[DeadLetter]:
    topic = Topics.for_settings(settings).dead_letters.name
    return read_dead_letters(settings.bootstrap_servers, topic)


def assert_each_bad_message_dead_lettered_once(letters: list[DeadLetter], bad: list[Bad]) -> None:
    expected = {item.letter: item.reason for item in bad}
    assert len(expected) == len(bad), "the workload made two bad messages alike"
    found = Counter((letter.key or b"", letter.value) for letter in letters)
    unexpected = [letter for letter in letters if (letter.key or b"", letter.value) not in expected]
    assert not unexpected, [(_short(u.key), _short(u.value), u.reason) for u in unexpected[:5]]
    twice = [(_short(k), n) for k, n in found.items() if n > 1]
    assert not twice, f"dead-lettered more than once: {twice[:5]}"
    missing = [(_short(i.message.key), _short(i.message.value), i.reason)
               for i in bad if i.letter not in found]  # fmt: skip
    assert not missing, f"{len(missing)} bad messages not dead-lettered: {missing[:5]}"
    wrong = [(_short(letter.value), letter.reason, expected[(letter.key or b"", letter.value)])
             for letter in letters
             if expected[(letter.key or b"", letter.value)] not in letter.reason]  # fmt: skip
    assert not wrong, f"{len(wrong)} dead letters with another reason: {wrong[:5]}"


def _short(raw: Any) -> Any:
    return raw[:80] if isinstance(raw, bytes) and len(raw) > 80 else raw


def assert_events_equal(found: dict[str, Any], expected: dict[str, Any]) -> None:
    if found == expected:
        return
    missing = sorted(set(expected) - set(found))[:5]
    extra = sorted(set(found) - set(expected))[:5]
    differ = [
        (e, found[e], expected[e]) for e in expected if e in found and found[e] != expected[e]
    ]
    pytest.fail(
        f"stored events differ from the model: {len(found)} vs {len(expected)}; "
        f"missing {missing}, extra {extra}, {len(differ)} differ: {differ[:3]}"
    )


@pytest.mark.timeout(SCALE.timeout_s)
def test_one_mixed_stream_survives_kills_outages_and_poison(
    own_redis: LocalRedis,
    own_kafka: LocalKafka,
    settings: Settings,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    print(f"fault suite: {SCALE}, DRIFTLINE_FAULTS_SEED={SEED}")
    rng = random.Random(SEED)
    own_redis.start()
    settings = settings.with_overrides(
        kafka_bootstrap_servers=own_kafka.bootstrap_servers,
        redis_url=own_redis.url,
        parked_update_timeout_s=PARKED_TIMEOUT_S,
        event_deletion_batch_size=40,
        # Small batches: more commits for a kill to land between.
        batch_max_messages=300,
    )
    stream = MixedStream(rng, settings.parked_updates_per_event, settings.max_event_bytes)
    bad = stream.poison(SCALE.ghosts, SCALE.oversized) + stream.fuzz(SCALE.fuzzed)
    rng.shuffle(bad)
    faults = ["kill"] * SCALE.kills + ["broker outage", "redis kill", "redis wipe"]
    rng.shuffle(faults)
    chunks = len(faults) + 1
    ids_at, range_at = chunks // 3, chunks // 2

    workers = Workers(start_worker, settings)
    with Driftline(settings) as client:
        client.register_model(CHURN_SPEC, CHURN_BASELINE)
    for i in range(chunks):
        if i == ids_at:
            ids = stream.delete_ids(60)
            send_id_deletion(settings, PROJECT, MODEL, "by-ids", ids, update_metrics=True)
        if i == range_at:
            start_ms, end_ms = stream.delete_range()
            send_range_deletion(settings, PROJECT, MODEL, "by-range", start_ms, end_ms,
                                update_metrics=True)  # fmt: skip
        publish(settings, stream.chunk(SCALE.messages // chunks, bad[i::chunks]))
        if i == len(faults):
            break
        # A random moment while the worker works through the chunk (it may be done).
        time.sleep(rng.uniform(0, 1.5))
        workers.assert_alive(f"before the {faults[i]}")
        if faults[i] == "kill":
            workers.kill_and_restart()
        elif faults[i] == "broker outage":
            own_kafka.stop()
            time.sleep(SCALE.outage_s)  # the outage itself, not a wait for a condition
            workers.assert_alive("during the broker outage")
            own_kafka.start()
        elif faults[i] == "redis kill":
            own_redis.kill()
            time.sleep(rng.uniform(3, 8))  # ingestion goes on without Redis
            workers.assert_alive("while Redis was down")
            own_redis.start()
        else:
            redis.Redis.from_url(own_redis.url).flushall()

    wait_for_lag_zero(settings, timeout_s=600)
    wait_until(lambda: deletion_finished(settings, "by-range", settings.ingest_partitions),
               timeout_s=120, what="the range deletion done on every partition")  # fmt: skip
    wait_until(
        lambda: all(r["state"] == "done" for r in deletion_progress(settings, "by-ids").values()),
        timeout_s=60, what="the id deletion done",
    )  # fmt: skip
    # The updates of never-inserted ids time out a little after the last one was read.
    wait_until(lambda: len(dead_letters(settings)) >= len(bad), timeout_s=PARKED_TIMEOUT_S + 120,
               interval_s=2, what=f"{len(bad)} dead letters")  # fmt: skip
    wait_for_lag_zero(settings)

    assert_events_equal(stored_events(settings), stream.model.events)
    assert_redis_equals_recomputation(settings)
    assert_each_bad_message_dead_lettered_once(dead_letters(settings), bad)
    wait_until(lambda: redis_matches_topic(settings), timeout_s=60,
               what="the Redis bins to equal the metrics topic")  # fmt: skip
    workers.assert_alive("at the end")
    assert len(workers.started) == SCALE.kills + 1
