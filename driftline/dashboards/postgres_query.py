"""The query of Grafana's PostgreSQL datasource, as a grafana-foundation-sdk query type.

The SDK ships query types for the datasources it generates from Grafana's schemas
(Prometheus, Loki, ...), not for the SQL ones; it lets a project declare its own the way
its ``custom-query`` example does: a ``Dataquery`` with ``to_json``/``from_json``, its
builder, and a variant registered under the datasource's plugin id so that
``Dashboard.from_json`` reads the query back as this type.
"""

from __future__ import annotations

import enum
from typing import Any, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

# The plugin id of Grafana's built-in PostgreSQL datasource (named "postgres" before 10.3).
POSTGRES_PLUGIN = "grafana-postgresql-datasource"


class SqlFormat(enum.StrEnum):
    """How Grafana reads the rows: a time column and numeric series, or a table."""

    TIME_SERIES = "time_series"
    TABLE = "table"


class PostgresQuery(cogvariants.Dataquery):
    """A raw SQL query (code mode), as Grafana's query editor saves it."""

    def __init__(
        self,
        raw_sql: str = "",
        sql_format: SqlFormat = SqlFormat.TIME_SERIES,
        ref_id: str = "",
        datasource: dashboard.DataSourceRef | None = None,
    ) -> None:
        self.raw_sql = raw_sql
        self.sql_format = sql_format
        self.ref_id = ref_id
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "rawSql": self.raw_sql,
            "format": self.sql_format.value,
            "rawQuery": True,
            "editorMode": "code",
        }
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        datasource = data.get("datasource")
        return cls(
            raw_sql=data.get("rawSql", ""),
            sql_format=SqlFormat(data.get("format", SqlFormat.TIME_SERIES)),
            ref_id=data.get("refId", ""),
            datasource=None
            if datasource is None
            else dashboard.DataSourceRef.from_json(datasource),
        )


def variant_config() -> cogruntime.DataqueryConfig:
    """Registered with ``cogruntime.register_dataquery_variant`` to read the queries back."""
    return cogruntime.DataqueryConfig(
        identifier=POSTGRES_PLUGIN, from_json_hook=PostgresQuery.from_json
    )


class PostgresQueryBuilder(cogbuilder.Builder[PostgresQuery]):
    """A panel target: ``PostgresQueryBuilder(sql).format(SqlFormat.TABLE).ref_id("A")``."""

    def __init__(self, raw_sql: str) -> None:
        self._internal = PostgresQuery(raw_sql=raw_sql)

    def build(self) -> PostgresQuery:
        return self._internal

    def format(self, sql_format: SqlFormat) -> Self:
        self._internal.sql_format = sql_format
        return self

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def datasource(self, datasource: dashboard.DataSourceRef) -> Self:
        self._internal.datasource = datasource
        return self


class PostgresAnnotationTarget(dashboard.AnnotationTarget):
    """An annotation's SQL query.

    The SDK's schema (Grafana 10.1) types an annotation's target as the built-in Grafana
    datasource's (limit, tags, ...; "TODO: this should be a regular DataQuery" there).
    Grafana's SQL datasources read ``target.rawSql`` with ``time``, ``timeend``, ``text``
    and ``tags`` columns, so this target writes the SQL query in its place.
    """

    def __init__(self, query: PostgresQuery) -> None:
        super().__init__()
        self.query = query

    def to_json(self) -> dict[str, object]:
        return self.query.to_json()


class PostgresAnnotationTargetBuilder(cogbuilder.Builder[dashboard.AnnotationTarget]):
    """``AnnotationQuery().target(PostgresAnnotationTargetBuilder(query))``."""

    def __init__(self, query: cogbuilder.Builder[PostgresQuery]) -> None:
        self._internal = PostgresAnnotationTarget(query.build())

    def build(self) -> dashboard.AnnotationTarget:
        return self._internal
