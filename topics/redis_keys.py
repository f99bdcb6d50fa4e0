"""The Redis layout: every key Driftline writes in Redis is named here, and only here.

Redis is a view for the API and dashboards, never the truth: each key is rebuilt from
Kafka by itself when Redis is wiped or replaced. ``topics/SCHEMAS.md`` ("Redis") says
what each key holds, who writes it and what rebuilds it. Every key starts with the topic
prefix, so tests and tenants that share a Redis never share a key. ``model`` is
``project_id/model_id``; ``day`` the UTC day as days since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RedisKeys:
    prefix: str

    def bin(self, model: str, hour: int) -> str:
        """A bin's JSON, as on the metrics topic (the Redis projection)."""
        return f"{self.prefix}:bin:{model}:{hour}"

    def bin_hours(self, model: str) -> str:
        """The sorted set of a model's hours that have a bin (the projection)."""
        return f"{self.prefix}:bins:{model}"

    def projected(self, partition: int) -> str:
        """The next metrics-topic offset of ``partition`` that Redis does not hold."""
        return f"{self.prefix}:projected:{partition}"

    def owner(self, partition: int) -> str:
        """The URL of the worker that holds ingest ``partition`` (its heartbeat)."""
        return f"{self.prefix}:owner:{partition}"

    def delete_requests(self, model: str, day: int) -> str:
        """Delete requests accepted for a model that day (the API's rate limit)."""
        return f"{self.prefix}:delete-requests:{model}:{day}"

    def deleted_events(self, model: str, day: int) -> str:
        """Hash: ingest partition -> events it deleted of a model that day (the daily cap)."""
        return f"{self.prefix}:deleted-events:{model}:{day}"
