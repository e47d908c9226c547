"""PostgreSQL connections that cannot hang a drain: connect timeout, TCP
keepalives and user timeout, statement/lock/idle-transaction timeouts."""

from __future__ import annotations

import inspect
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import ConfigurationError

log = logging.getLogger("syncwd_fast")

_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
    "application_name": "syncwd-fast",
}


def conninfo(dsn: str) -> str:
    """The DSN with timeout and keepalive defaults added; everything the DSN
    sets itself (sslmode, sslrootcert, password, ...) passes through untouched."""
    return make_conninfo(**{**_DEFAULTS, **{k: str(v) for k, v in conninfo_to_dict(dsn).items()}})


def connect(
    dsn: str,
    *,
    statement_timeout_s: float = 300.0,
    lock_timeout_s: float = 60.0,
    idle_in_transaction_s: float = 60.0,
) -> psycopg.Connection[Any]:
    """A connection in autocommit mode (transactions are explicit) with its
    timeouts set."""
    conn = psycopg.connect(conninfo(dsn), autocommit=True)
    # A drainer stopped inside a transaction must not hold its locks for long:
    # the server ends such a session after idle_in_transaction_s.
    with deadline(conn, statement_timeout_s + 10):
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false),"
            " set_config('idle_in_transaction_session_timeout', %s, false)",
            (
                str(int(statement_timeout_s * 1000)),
                str(int(lock_timeout_s * 1000)),
                str(int(idle_in_transaction_s * 1000)),
            ),
        )
    return conn


class Deadline:
    """Shut the connection's socket down if no progress is reported for
    ``seconds`` (``renew()`` reports progress).

    psycopg has no read timeout, and a stalled peer that still acknowledges
    every segment (a hung pooler or proxy) defeats keepalives and
    tcp_user_timeout: without this a drain could wait forever. The blocked
    call then fails as a lost connection, which the drain retries. Long work
    made of many short statements (isolating bad rows) renews it as it goes."""

    def __init__(self, conn: psycopg.Connection[Any], seconds: float) -> None:
        self.fd = conn.pgconn.socket
        self.seconds = seconds
        self.expires = time.monotonic() + seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="syncwd-deadline", daemon=True)

    def renew(self) -> None:
        self.expires = time.monotonic() + self.seconds

    def _watch(self) -> None:
        while not self._done.wait(max(self.expires - time.monotonic(), 0.0)):
            if time.monotonic() >= self.expires:
                try:
                    with socket.socket(fileno=os.dup(self.fd)) as sock:
                        sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return

    def __enter__(self) -> Deadline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()


@contextmanager
def deadline(conn: psycopg.Connection[Any], seconds: float) -> Iterator[Deadline]:
    """A `Deadline` for the duration of the block."""
    with Deadline(conn, seconds) as d:
        yield d


def require_sync(client: Any, who: str) -> None:
    """Refuse an asyncio Redis client at once (its methods return coroutines,
    which would fail later as "Input must be bytes" and never-awaited
    warnings): the writer and the drain call Redis synchronously, the drain
    from threads of its own."""
    execute = getattr(client, "execute_command", None)
    if execute is not None and inspect.iscoroutinefunction(execute):
        kind = f"{type(client).__module__}.{type(client).__qualname__}"
        raise ConfigurationError(
            f"{who} needs a synchronous Redis client (redis.Redis or redis.RedisCluster), not {kind}; from asyncio"
            " code, run its calls in a thread: await asyncio.to_thread(...)"
        )


def client_options(timeout_s: float = 30.0) -> dict[str, Any]:
    """Timeouts, keepalive and explicit, bounded retries of every client made here."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": 5.0,
        "socket_keepalive": True,
        "health_check_interval": 30,
        # Connection errors only: a timed-out read is retried by the drain's own
        # bounded loop; retrying it here too multiplies the wait on a stalled link.
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.1), 2, supported_errors=(redis.exceptions.ConnectionError,)),
    }


def redis_from_url(url: str, *, cluster: bool = False, timeout_s: float = 30.0, **extra: Any) -> Any:
    """A redis-py client with timeouts, keepalive and explicit, bounded retries
    (``rediss://`` and its TLS parameters pass through untouched); ``extra``
    goes to ``from_url`` as well (redis_connect.connect_redis detects a cluster)."""
    import redis

    options = {**client_options(timeout_s), **extra}
    if cluster:
        from redis.cluster import RedisCluster

        options.pop("health_check_interval")
        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def refresh_slots(redis_client: Any) -> None:
    """Have a cluster client read the cluster's map of the slots again. Calls
    made on a node's own client (``primaries``) fail for good once that node
    is gone (a failover): only the cluster client's own commands refresh the
    map, and a drainer's client may send none before it lists the primaries."""
    manager = getattr(redis_client, "nodes_manager", None)
    if manager is None:
        return
    try:
        manager.initialize()
    except Exception as exc:  # no node answering yet: the caller's retry meets the fault itself
        log.debug("refreshing the map of the cluster's slots failed: %s", exc)


def primaries(redis_client: Any) -> list[tuple[str, Any]]:
    """(name, client) of every primary: each of a cluster's, with a client of
    its own, or the one server of a plain client."""
    if hasattr(redis_client, "get_primaries"):
        return [(node.name, redis_client.get_redis_connection(node)) for node in redis_client.get_primaries()]
    pool = redis_client.connection_pool
    if getattr(pool, "service_name", None) is not None:  # through Sentinel: the address is the master's of the moment
        return [(f"service {pool.service_name}", redis_client)]
    kwargs = pool.connection_kwargs
    name = kwargs.get("path") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"
    return [(str(name), redis_client)]
