"""Every topic Driftline owns: name, partitions, configuration. No other module names a topic.

Names derive from one prefix so that a test (or a tenant) gets its own set of topics.
The message formats carried by each topic are documented in ``topics/SCHEMAS.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from driftline.state.alerts import Alert
from driftline.state.bins import BIN_KEY, BinKey
from driftline.state.registered import RegisteredModel
from driftline.state.tables import BYTES as RAW
from driftline.state.tables import TEXT, Codec
from driftline.topics.alert_rules import ALERT_RULE
from driftline.topics.alerts import ALERT
from driftline.topics.bin_partials import BIN_PARTIAL, BinPartial
from driftline.topics.clients import DEAD_LETTER_MAX_BYTES, RECORD_OVERHEAD_BYTES
from driftline.topics.deletion_requests import DELETION_REQUEST
from driftline.topics.deletion_requests import KEEP_MS as DELETION_REQUESTS_KEEP_MS
from driftline.topics.metric_bins import METRICS_VALUE, MetricsValue
from driftline.topics.model_bins import MODEL_BIN, ModelBin
from driftline.topics.model_registry import MODEL_RECORD
from driftline.topics.notification_dead_letters import NOTIFICATION_DEAD_LETTER

K = TypeVar("K")
V = TypeVar("V")


class TopicSettings(Protocol):
    """What the topics take from the application's settings (``driftline.settings.Settings``
    is one): passed in, so that this layer never imports the application above it."""

    @property
    def bootstrap_servers(self) -> str: ...

    @property
    def topic_prefix(self) -> str: ...

    @property
    def ingest_partitions(self) -> int: ...

    @property
    def ingest_retention_ms(self) -> int: ...

    @property
    def bins_partitions(self) -> int: ...

    @property
    def compaction_lag_ms(self) -> int: ...

    @property
    def tombstone_retention_ms(self) -> int: ...


def _compacted(settings: TopicSettings) -> dict[str, str]:
    """Compaction that is guaranteed to run within a bound, so erasure has a deadline.

    Without ``max.compaction.lag.ms`` a quiet changelog could keep a deleted event's last
    value for as long as its segment stays active or the dirty ratio stays low.
    """
    return {
        "cleanup.policy": "compact",
        "segment.ms": str(settings.compaction_lag_ms),
        "max.compaction.lag.ms": str(settings.compaction_lag_ms),
        "delete.retention.ms": str(settings.tombstone_retention_ms),
    }


@dataclass(frozen=True, slots=True)
class TopicSpec(Generic[K, V]):
    """A topic declared once: its name, partitions and configuration, and the codecs of
    its keys and values (kafka-streams-examples' ``Schemas.Topic<K, V>``), so a producer
    and every consumer of it encode and decode through the same two functions."""

    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)
    key: Codec[K] = RAW  # type: ignore[assignment]
    value: Codec[V] = RAW  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Topics:
    # Raw inserts, partial updates and deletes, keyed project/model/event_id. Raw bytes
    # on purpose: any producer writes here, and ``topics.messages.decode_ingest`` turns
    # a value it cannot read into a dead letter's reason instead of an exception.
    ingest: TopicSpec[bytes, bytes]
    # Model specs keyed project/model; compacted, read whole by every worker and client.
    models: TopicSpec[str, RegisteredModel]
    # Messages the pipeline could not apply: original key and bytes, reason in headers
    # (``topics.dead_letters.DeadLetter``).
    dead_letters: TopicSpec[bytes, bytes]
    # The merge agent's table writes, one partition per ingest partition; compacted.
    # Records are store records (``table \0 key``; ``topics.changelog``).
    merge_changelog: TopicSpec[bytes, bytes]
    # Each batch's bin deltas (and a rebuild's snapshots), per (model, hour, ingest
    # partition), keyed model/hour.
    bin_partials: TopicSpec[BinKey, BinPartial]
    # The bins agent's table writes; compacted.
    bins_changelog: TopicSpec[bytes, bytes]
    # Every changed bin, whole (counts, metrics, version), keyed model/hour; compacted.
    metrics: TopicSpec[BinKey, MetricsValue]
    # Delete requests the API accepted, keyed by deletion id; compacted, kept 30 days.
    deletion_requests: TopicSpec[str, dict[str, Any]]
    # Alert rules keyed project/model/rule_id; compacted, read whole by the API.
    alert_rules: TopicSpec[str, dict[str, Any]]
    # Every changed bin again, keyed by model (``topics.model_bins``): the evaluator's input.
    model_bins: TopicSpec[str, ModelBin]
    # The evaluator's table writes; compacted.
    alerts_changelog: TopicSpec[bytes, bytes]
    # Every alert, whole (state and history), each time it changes; compacted.
    alerts: TopicSpec[str, Alert]
    # Notifications given up on after their retries, keyed by change id (JSON: the
    # channel, the reason, the attempts; ``agents.notifier``).
    notification_dead_letters: TopicSpec[str, dict[str, Any]]
    # Faust app id and consumer group of the workers.
    app_id: str

    @classmethod
    def for_settings(cls, settings: TopicSettings) -> Topics:
        prefix = settings.topic_prefix
        compacted = _compacted(settings)
        return cls(
            ingest=TopicSpec(
                f"{prefix}.ingest",
                settings.ingest_partitions,
                {"retention.ms": str(settings.ingest_retention_ms)},
            ),
            models=TopicSpec(f"{prefix}.models", 1, compacted, key=TEXT, value=MODEL_RECORD),
            # Room for any message the ingest topic took, with its headers (the broker's
            # default record limit is ~1 MB; the engine cuts a dead letter beyond this).
            dead_letters=TopicSpec(
                f"{prefix}.dead-letters",
                1,
                {"max.message.bytes": str(DEAD_LETTER_MAX_BYTES + RECORD_OVERHEAD_BYTES)},
            ),
            merge_changelog=TopicSpec(
                f"{prefix}.merge-changelog", settings.ingest_partitions, compacted
            ),
            # Deltas: one lost before the bins agent read it leaves its bin wrong until a
            # rebuild, so a week, beyond any outage the worker waits out.
            bin_partials=TopicSpec(
                f"{prefix}.bin-partials",
                settings.bins_partitions,
                {"retention.ms": str(7 * 86_400_000)},
                key=BIN_KEY,
                value=BIN_PARTIAL,
            ),
            bins_changelog=TopicSpec(
                f"{prefix}.bins-changelog", settings.bins_partitions, compacted
            ),
            metrics=TopicSpec(
                f"{prefix}.metrics",
                settings.bins_partitions,
                compacted,
                key=BIN_KEY,
                value=METRICS_VALUE,
            ),
            # The status window: requests are read back by id (compaction) for 30 days
            # (time retention), and no longer.
            deletion_requests=TopicSpec(
                f"{prefix}.deletion-requests",
                1,
                {
                    **compacted,
                    "cleanup.policy": "compact,delete",
                    "retention.ms": str(DELETION_REQUESTS_KEEP_MS),
                },
                key=TEXT,
                value=DELETION_REQUEST,
            ),
            alert_rules=TopicSpec(
                f"{prefix}.alert-rules", 1, compacted, key=TEXT, value=ALERT_RULE
            ),
            # Superseded within seconds, like the bin partials; the evaluator's changelog
            # keeps what it read.
            model_bins=TopicSpec(
                f"{prefix}.model-bins",
                settings.bins_partitions,
                {"retention.ms": "86400000"},
                key=TEXT,
                value=MODEL_BIN,
            ),
            alerts_changelog=TopicSpec(
                f"{prefix}.alerts-changelog", settings.bins_partitions, compacted
            ),
            # One partition: a few changes an hour, read whole by the API and the notifier.
            alerts=TopicSpec(f"{prefix}.alerts", 1, compacted, key=TEXT, value=ALERT),
            notification_dead_letters=TopicSpec(
                f"{prefix}.notification-dead-letters", 1, key=TEXT, value=NOTIFICATION_DEAD_LETTER
            ),
            app_id=f"{prefix}-worker",
        )

    @property
    def merge_group(self) -> str:
        """Consumer group of the merge agent (its committed offsets show its lag)."""
        return f"{self.app_id}-merge"

    @property
    def bins_group(self) -> str:
        return f"{self.app_id}-bins"

    @property
    def serving_group(self) -> str:
        return f"{self.app_id}-serving"

    @property
    def postgres_bins_group(self) -> str:
        """Consumer group of the metrics topic's PostgreSQL projection (its lag only: it
        resumes from the markers in PostgreSQL)."""
        return f"{self.app_id}-postgres-bins"

    @property
    def postgres_alerts_group(self) -> str:
        """Consumer group of the alerts topic's PostgreSQL projection."""
        return f"{self.app_id}-postgres-alerts"

    @property
    def alerts_group(self) -> str:
        """Consumer group of the alert evaluator."""
        return f"{self.app_id}-alerts"

    @property
    def notifier_group(self) -> str:
        """Consumer group of the notifier (its committed offsets: changes delivered)."""
        return f"{self.app_id}-notifier"

    @property
    def owned(self) -> tuple[TopicSpec[Any, Any], ...]:
        """Every topic Driftline creates (Faust adds its own internal ones)."""
        return (
            self.ingest,
            self.models,
            self.dead_letters,
            self.merge_changelog,
            self.bin_partials,
            self.bins_changelog,
            self.metrics,
            self.deletion_requests,
            self.alert_rules,
            self.model_bins,
            self.alerts_changelog,
            self.alerts,
            self.notification_dead_letters,
        )
