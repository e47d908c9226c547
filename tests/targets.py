"""The engine's tests against each built-in sink: a test module imports the
fixtures ``db``, ``dsn`` and ``schema`` from here instead of conftest's, and
each of its tests runs once against PostgreSQL and once against MariaDB
(conftest.pytest_generate_tests parametrizes ``target``). A test marked
``postgres_only`` runs against PostgreSQL alone.

For MariaDB, ``db`` answers the part of psycopg's connection API the tests
use (``execute(sql, params).fetchone()/fetchall()``), ``schema`` is the
test's own database (so ``f"{schema}.p"`` names a table in both), and the
PostgreSQL spellings of CREATE TABLE and of quoted identifiers the tests
use are translated.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

# PostgreSQL types and clauses as MariaDB spells them (in CREATE TABLE only).
_DDL = [
    (re.compile(r"\bjsonb\b"), "JSON"),
    (re.compile(r"\btimestamptz\b"), "DATETIME(6)"),
    (re.compile(r"\bserial\b"), "INT AUTO_INCREMENT"),
    (re.compile(r"\btext(?= PRIMARY KEY| NOT NULL UNIQUE| UNIQUE)"), "VARCHAR(191)"),
]


class _Cursor:
    """Rows as psycopg gives them: a list of tuples."""

    def __init__(self, cur: Any) -> None:
        self.cur = cur

    def fetchone(self) -> Any:
        return self.cur.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self.cur.fetchall())


class MySQLDB:
    """An autocommit PyMySQL connection with psycopg's ``execute``."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Any = None) -> Any:
        cur = self.conn.cursor()
        for statement in [s for s in sql.split(";") if s.strip()]:
            if statement.lstrip().upper().startswith("CREATE TABLE"):
                for pattern, replacement in _DDL:
                    statement = pattern.sub(replacement, statement)
            statement = statement.replace('"', "`")  # quoted identifiers (values go as parameters)
            cur.execute(statement, params)
        return _Cursor(cur)


class MariaDB:
    """A MariaDB database of a test's own (the ``m`` fixture): its DSN and
    an autocommit connection, with shorthands."""

    def __init__(self, dsn: str, conn: Any) -> None:
        self.dsn, self.conn = dsn, conn

    def sql(self, text: str, args: Any = None) -> Any:
        with self.conn.cursor() as cur:
            cur.execute(text, args)
            return cur.fetchall()

    def rows(self, table: str, order: str = "1") -> Any:
        return self.sql(f"SELECT * FROM {table} ORDER BY {order}")

    def count(self, table: str) -> int:
        return int(self.sql(f"SELECT COUNT(*) FROM {table}")[0][0])


class Target:
    def __init__(self, kind: str, db: Any, dsn: str, schema: str) -> None:
        self.kind, self.db, self.dsn, self.schema = kind, db, dsn, schema


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Target:
    if request.param == "mysql":
        dsn, conn = request.getfixturevalue("mysql_db")
        return Target("mysql", MySQLDB(conn), dsn, dsn.rsplit("/", 1)[1].split("?")[0])
    return Target(
        "postgres",
        request.getfixturevalue("pg_db"),
        request.getfixturevalue("base_dsn"),
        request.getfixturevalue("pg_schema"),
    )


@pytest.fixture
def db(target: Target) -> Any:
    return target.db


@pytest.fixture
def dsn(target: Target) -> str:
    return target.dsn


@pytest.fixture
def schema(target: Target) -> str:
    return target.schema
