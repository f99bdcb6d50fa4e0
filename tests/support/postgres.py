"""Dropping a test's PostgreSQL schema once it is done with it, and reading its rows."""

from __future__ import annotations

import contextlib

import psycopg

from driftline.topics.postgres_tables import schema_name


def drop_schema(url: str, prefix: str) -> None:
    """Drop the schema of ``prefix``'s tables, best effort (like ``drop_topics``): a server
    that is gone (a test stopped its own) is left alone."""
    with (
        contextlib.suppress(psycopg.OperationalError),
        psycopg.connect(url, connect_timeout=5, autocommit=True) as connection,
    ):
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema_name(prefix)}" CASCADE')
