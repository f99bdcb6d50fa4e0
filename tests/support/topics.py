"""Dropping a test's topics once it is done with them."""

from __future__ import annotations

import contextlib

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient


def drop_topics(bootstrap_servers: str, prefix: str, timeout_s: float = 10) -> None:
    """Delete every topic named from ``prefix`` (Driftline's ``<prefix>.*`` and Faust's
    ``<prefix>-worker-*``), best effort: the session's broker holds thousands of
    partitions otherwise, and ran out of file descriptors on a long run. A broker that
    is gone (a test stopped it) is left alone."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "socket.timeout.ms": 5000})
    with contextlib.suppress(KafkaException):
        names = [
            name
            for name in admin.list_topics(timeout=timeout_s).topics
            if name.startswith((f"{prefix}.", f"{prefix}-"))
        ]
        if not names:
            return
        for future in admin.delete_topics(names, operation_timeout=timeout_s).values():
            with contextlib.suppress(KafkaException):
                future.result(timeout=timeout_s)
