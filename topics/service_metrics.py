"""The service metrics every Driftline process exposes for Prometheus, declared once.

Prometheus scrapes them from ``/metrics`` (a worker on its internal port, the REST API on
``DRIFTLINE_API_METRICS_PORT``); the pipeline dashboard queries them by these names, and
README's "Service metrics" table documents them. Names and labels follow Prometheus's
conventions: counters end in ``_total``, durations are in seconds (``_seconds``), sizes
in their unit (``_messages``), and every label takes few values (a stage, a topic, a
reason's kind, never an id or a message's text), since each value is a series kept.

Here, below the agents and the API, because both record them and the projections and
``topics.outages`` (connectivity) do too. The default registry is process-wide:
one process, one set of series.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

EXPOSITION_CONTENT_TYPE = CONTENT_TYPE_LATEST

# Batch sizes from a single message up to the merge stage's 10,000 and beyond.
MESSAGE_COUNT_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000)
# From a millisecond to a minute: a handled batch, an emission's delay, an outage's wait.
SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

MESSAGES_CONSUMED = Counter(
    "driftline_messages_consumed_total",
    "Messages a stage read from a topic (each counted once per handled batch).",
    ["stage", "topic"],
)
MESSAGES_PRODUCED = Counter(
    "driftline_messages_produced_total",
    "Messages a stage wrote to a topic (dead letters included, changelogs excluded).",
    ["stage", "topic"],
)
DEAD_LETTERS = Counter(
    "driftline_dead_letters_total",
    "Messages a stage set aside to a dead-letter topic, by the kind of reason.",
    ["stage", "reason"],
)
CONSUMER_LAG = Gauge(
    "driftline_consumer_lag_messages",
    "Messages of a partition a stage has yet to read (high watermark minus position).",
    ["stage", "topic", "partition"],
)
BATCH_SIZE = Histogram(
    "driftline_batch_size_messages",
    "Messages per batch a stage handled.",
    ["stage"],
    buckets=MESSAGE_COUNT_BUCKETS,
)
BATCH_DURATION = Histogram(
    "driftline_batch_duration_seconds",
    "Time a stage took to handle a batch and commit its outputs.",
    ["stage"],
    buckets=SECONDS_BUCKETS,
)
BIN_EMISSIONS = Counter(
    "driftline_bin_emissions_total",
    "Hour bins the bins stage emitted to the metrics topic: a whole bin or a tombstone.",
    ["kind"],
)
LABEL_TO_EMISSION = Histogram(
    "driftline_label_to_emission_seconds",
    "From a label (an update with a target) reaching the ingest topic to its bin's emission.",
    buckets=SECONDS_BUCKETS,
)
PROJECTION_DELAY = Histogram(
    "driftline_projection_delay_seconds",
    "From a bin's emission to its write into a projection (redis, postgres).",
    ["projection"],
    buckets=SECONDS_BUCKETS,
)
NOTIFICATIONS = Counter(
    "driftline_notifications_total",
    "Alert notification attempts by channel type and result (delivered, retried, dead_lettered).",
    ["channel_type", "result"],
)
DEPENDENCY_UP = Gauge(
    "driftline_dependency_up",
    "Whether this process last reached a dependency (kafka, redis, postgresql): 1 or 0.",
    ["dependency"],
)
HTTP_REQUESTS = Counter(
    "driftline_http_requests_total",
    "REST API requests by route template, method and status code.",
    ["route", "method", "code"],
)
HTTP_REQUEST_DURATION = Histogram(
    "driftline_http_request_duration_seconds",
    "REST API request handling time by route template and method.",
    ["route", "method"],
    buckets=SECONDS_BUCKETS,
)


def exposition() -> bytes:
    """Every metric of this process in Prometheus's text format, for a ``/metrics`` answer
    (its Content-Type: ``EXPOSITION_CONTENT_TYPE``)."""
    return generate_latest()
