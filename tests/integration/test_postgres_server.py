"""The embedded PostgreSQL server (``driftline/stack/postgres.py``) and the projection's
tables on it: created twice without harm, rows typed as the layout says, a kill survived."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

from driftline.stack import LocalPostgres
from driftline.stack.postgres import postgres_answers
from driftline.topics.postgres_tables import BinRow, ddl, schema_name

ROW = BinRow("shop", "churn", datetime(2025, 11, 22, 10, tzinfo=UTC),
             datetime(2025, 11, 22, 11, tzinfo=UTC), 3, datetime(2025, 11, 22, 11, tzinfo=UTC),
             2**62, 1, 1 / 2**62, None)  # fmt: skip


def test_the_server_starts_idempotently_keeps_committed_rows_through_a_kill_and_stops(
    own_postgres: LocalPostgres,
) -> None:
    own_postgres.start()
    own_postgres.start()
    schema = schema_name("Test.Server")
    with psycopg.connect(own_postgres.url, autocommit=True) as connection:
        for _ in range(2):
            for statement in ddl(schema):
                connection.execute(statement)
        columns = ", ".join(BinRow._fields)
        connection.execute(
            f"INSERT INTO {schema}.bins ({columns}) VALUES ({', '.join(['%s'] * len(ROW))})", ROW
        )
    own_postgres.kill()
    assert not postgres_answers(own_postgres.url)
    own_postgres.start()
    with psycopg.connect(own_postgres.url) as connection:
        assert connection.execute(f"SELECT {columns} FROM {schema}.bins").fetchall() == [ROW]
        listening = connection.execute("SHOW listen_addresses").fetchone()
    assert listening == ("127.0.0.1",)
    own_postgres.stop()
    assert not postgres_answers(own_postgres.url)
