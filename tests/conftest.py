"""Real servers for the tests.

Redis: SYNCWD_TEST_REDIS_URL, else the local one on 6379, else a throwaway
redis-server. With ``--redis-kind cluster`` (or SYNCWD_TEST_REDIS_KIND=cluster)
the Redis fixtures (redis_url, r, prefix, new_redis) serve a Redis Cluster
instead: SYNCWD_TEST_REDIS_CLUSTER_URL (any node), else one throwaway cluster
of 3 masters for the session, shared with the tests that ask for ``cluster``.
CI runs the engine's end-to-end, crash and bad-input tests so once more.
PostgreSQL: SYNCWD_TEST_DSN, else the local one on 5432, else a throwaway
cluster. Each test gets its own Redis key prefix and its own PostgreSQL
schema and removes only those.
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
    RedisClusterServers,
    RedisServer,
    ServerUnavailable,
    postgres_reachable,
    redis_reachable,
)

LOCAL_REDIS = "redis://127.0.0.1:6379/9"  # a database of its own: cleanup scans stay small
LOCAL_DSNS = ("host=127.0.0.1 port=5432 dbname=test", "host=127.0.0.1 port=5432 dbname=postgres")

_started: list[Any] = []
REDIS_KINDS = ("standalone", "cluster")
_kind = {"redis": "standalone"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak-seconds", type=float, default=30.0, help="how long the soak test writes and drains (default 30)"
    )
    parser.addoption(
        "--redis-kind",
        choices=REDIS_KINDS,
        default=os.environ.get("SYNCWD_TEST_REDIS_KIND") or "standalone",
        help="what the Redis fixtures serve: a standalone Redis (default) or a Redis Cluster of 3 masters"
        " (SYNCWD_TEST_REDIS_KIND)",
    )


def pytest_configure(config: pytest.Config) -> None:
    _kind["redis"] = config.getoption("--redis-kind")
    config.addinivalue_line(
        "markers", "standalone_only(reason): needs a standalone Redis; skipped under --redis-kind cluster"
    )


def redis_kind() -> str:
    """What redis_url, r and prefix serve this session: "standalone" or "cluster"."""
    return _kind["redis"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if redis_kind() != "cluster":
        return
    for item in items:
        marker = item.get_closest_marker("standalone_only")
        if marker:
            reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "")
            item.add_marker(pytest.mark.skip(reason=f"standalone Redis only: {reason}"))


_cluster: list[RedisClusterServers] = []


def cluster_servers() -> RedisClusterServers:
    """The session's throwaway Redis Cluster (3 masters), started on first use."""
    if not _cluster:
        _cluster.append(RedisClusterServers(3).start())
        _started.append(_cluster[0])
    return _cluster[0]


def _server(kind: str) -> str:
    try:
        if kind == "redis" and redis_kind() == "cluster":
            return os.environ.get("SYNCWD_TEST_REDIS_CLUSTER_URL") or cluster_servers().url
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


def redis_client(url: str, **options: Any) -> Any:
    """A client of the session's kind: redis.Redis, or redis.RedisCluster
    under --redis-kind cluster (chosen, not detected: the CLI's detection is
    what some tests check)."""
    if redis_kind() == "cluster":
        return redis_lib.RedisCluster.from_url(url, **options)
    return redis_lib.Redis.from_url(url, **options)


def pytest_report_header(config: pytest.Config) -> list[str]:
    r = redis_client(server_url("redis"))
    with psycopg.connect(server_url("pg")) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    version = r.info("server")["redis_version"]  # a cluster's: one node's
    r.close()
    return [
        f"redis {version} ({redis_kind()}) at {server_url('redis')}",
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
    client = redis_client(redis_url)  # a cluster's scans every primary, its DEL splits by slot
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
def r(redis_url: str) -> Iterator[Any]:
    """A client of the tests' Redis: a redis.Redis, or a redis.RedisCluster under --redis-kind cluster."""
    client = redis_client(redis_url)
    yield client
    client.close()


@pytest.fixture
def new_redis(redis_url: str) -> Iterator[Any]:
    """``new_redis(**options)``: another client of the tests' Redis (as ``r``), with redis-py options."""
    made: list[Any] = []

    def make(**options: Any) -> Any:
        made.append(redis_client(redis_url, **options))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture(scope="session")
def cluster() -> RedisClusterServers:
    """A throwaway Redis Cluster of 3 masters shared by the session (the one
    --redis-kind cluster serves). Tests on it use prefixes of their own and
    must not flush, kill or reshard it: those start their own."""
    try:
        return cluster_servers()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


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
