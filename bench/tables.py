"""The bench's PostgreSQL schema and its target tables (identifiers through psycopg.sql)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from syncwd_fast.table import Table

from .data import COLUMNS


def reset_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))


def drop_schema(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _ident(table: Table) -> sql.Identifier:
    return sql.Identifier(*table.name.split("."))


def create(dsn: str, table: Table, width: str) -> None:
    """An empty target table of ``width`` (dropped first if it exists)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_ident(table)))
        conn.execute(sql.SQL("CREATE TABLE {} (" + COLUMNS[width] + ")").format(_ident(table)))


def truncate(dsn: str, table: Table) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(_ident(table)))


def count(dsn: str, table: Table) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_ident(table))).fetchone()
    return int(row[0]) if row else 0


def checkpoint(dsn: str) -> None:
    """Start limit and drain from the same WAL state; skipped without the privilege."""
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.Error:
        pass
