"""Real servers for the tests.

Redis: SYNCWD_TEST_REDIS_URL, else the local one on 6379, else a throwaway
redis-server. PostgreSQL: SYNCWD_TEST_DSN, else the local one on 5432, else a
throwaway cluster. Each test gets its own Redis key prefix and its own
PostgreSQL schema and removes only those.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis as redis_lib

from syncwd_fast import speedups
from syncwd_fast.servers import (
    INSTALL_HINT,
    PostgresServer,
    RedisServer,
    ServerUnavailable,
    postgres_reachable,
    redis_reachable,
)

LOCAL_REDIS = "redis://127.0.0.1:6379/9"  # a database of its own: cleanup scans stay small
LOCAL_DSNS = ("host=127.0.0.1 port=5432 dbname=test", "host=127.0.0.1 port=5432 dbname=postgres")

_started: list[Any] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-seconds", type=float, default=30.0, help="how long the soak test writes and drains (default 30)"
    )


def _server(kind: str) -> str:
    try:
        if kind == "redis":
            url = os.environ.get("SYNCWD_TEST_REDIS_URL")
            if url:
                return url
            if redis_reachable(LOCAL_REDIS):
                return LOCAL_REDIS
            _started.append(RedisServer().start())
            return str(_started[-1].url)
        dsn = os.environ.get("SYNCWD_TEST_DSN")
        if dsn:
            return dsn
        for local in LOCAL_DSNS:
            if postgres_reachable(local):
                return local
        _started.append(PostgresServer().start())
        return str(_started[-1].dsn)
    except ServerUnavailable as exc:
        pytest.exit(f"no {kind} server for the tests: {exc}. {INSTALL_HINT}", returncode=4)


_urls: dict[str, str] = {}


def server_url(kind: str) -> str:
    if kind not in _urls:
        _urls[kind] = _server(kind)
    return _urls[kind]


def pytest_report_header(config: pytest.Config) -> list[str]:
    r = redis_lib.Redis.from_url(server_url("redis"))
    with psycopg.connect(server_url("pg")) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    return [
        f"redis {r.info('server')['redis_version']} at {server_url('redis')}",
        f"postgresql {pg_version} at {server_url('pg')}",
    ]


def pytest_sessionfinish(session: pytest.Session) -> None:
    for server in _started:
        server.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return server_url("redis")


@pytest.fixture(scope="session")
def base_dsn() -> str:
    return server_url("pg")


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are removed afterwards."""
    p = "t" + uuid.uuid4().hex[:12]
    yield p
    client = redis_lib.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{p}:*", count=5000))
    for start in range(0, len(keys), 5000):
        client.delete(*keys[start : start + 5000])
    client.close()


@pytest.fixture(params=["c", "python"])
def impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each implementation of the per-row work in turn (speedups.ACTIVE);
    the C one skipped where it is not built."""
    name: str = request.param
    if name == "c" and not speedups.available():
        pytest.skip("the C speedup is not built")
    monkeypatch.setattr(speedups, "ACTIVE", name)
    return name


@pytest.fixture
def r(redis_url: str) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests of a module that takes its fixtures from tests/targets.py run
    against each built-in sink, or PostgreSQL alone when marked so."""
    if "target" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("postgres_only")
        metafunc.parametrize("target", ["postgres"] if only else ["postgres", "mysql"], indirect=True)


def _own_schema(base_dsn: str) -> Iterator[str]:
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    yield name
    with psycopg.connect(base_dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {name} CASCADE")


def _connection(base_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(base_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def schema(base_dsn: str) -> Iterator[str]:
    """A PostgreSQL schema of this test's own, dropped afterwards."""
    yield from _own_schema(base_dsn)


@pytest.fixture
def dsn(base_dsn: str) -> str:
    return base_dsn


@pytest.fixture
def db(base_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    yield from _connection(base_dsn)


# The same under names of their own, for tests/targets.py, whose db and
# schema stand for PostgreSQL's or MariaDB's.
@pytest.fixture
def pg_schema(base_dsn: str) -> Iterator[str]:
    yield from _own_schema(base_dsn)


@pytest.fixture
def pg_db(base_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    yield from _connection(base_dsn)


LOCAL_MYSQL = "mysql://root@127.0.0.1:3306/test"


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """SYNCWD_TEST_MYSQL_URL, else the local MariaDB on 3306. Where neither
    answers the MariaDB tests are skipped, except under CI (CI=true), where
    MariaDB runs and its absence is a failure."""
    url = os.environ.get("SYNCWD_TEST_MYSQL_URL") or LOCAL_MYSQL
    try:
        import pymysql

        from syncwd_fast.sinks.mysql.connection import parse_dsn

        pymysql.connect(**parse_dsn(url)).close()
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no MariaDB/MySQL at {url} for the tests: {exc}")
        pytest.skip(f"no MariaDB/MySQL at {url}: {exc}")
    return url


@pytest.fixture
def mysql_db(mysql_url: str) -> Iterator[tuple[str, Any]]:
    """A database of this test's own on the MariaDB server: (its DSN, an
    autocommit connection to it); dropped afterwards."""
    import pymysql

    from syncwd_fast.sinks.mysql.connection import parse_dsn

    name = "t_" + uuid.uuid4().hex[:12]
    args = parse_dsn(mysql_url)
    admin = pymysql.connect(**{**args, "database": None}, autocommit=True, charset="utf8mb4")
    admin.cursor().execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    dsn = urlunsplit(urlsplit(mysql_url)._replace(path="/" + name))
    conn = pymysql.connect(**{**args, "database": name}, autocommit=True, charset="utf8mb4")
    yield dsn, conn
    conn.close()
    admin.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
    admin.close()


@pytest.fixture
def m(mysql_db: tuple[str, Any]) -> Any:
    """The test's own MariaDB database, with shorthands (tests/targets.MariaDB)."""
    from .targets import MariaDB

    return MariaDB(*mysql_db)


@pytest.fixture
def persistent_redis() -> Iterator[RedisServer]:
    """A throwaway redis-server persisting every write (appendfsync always),
    for tests that kill and restart it and expect nothing lost."""
    try:
        server = RedisServer(appendonly=True).start()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A throwaway redis-server of this test's own, for tests that flush,
    kill or restart it."""
    try:
        server = RedisServer().start()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.close()
