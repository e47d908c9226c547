"""Which errors a drain retries, and which are configuration.

Every error ends in one of three places:

- a record's fault (a data error): the record is dead-lettered with the
  server's message and the rest of its batch lands (merge.py decides);
- configuration (a database that does not exist, a rejected login, a missing
  privilege, an invalid DSN or option): nothing a retry can fix, so the drain
  stops at once with the server's message (CLI exit code 2);
- a transient fault (a link, a restart, a failover, a read-only standby,
  Redis over its memory limit, a Redis Cluster slot being moved, a timeout,
  a deadlock): retried with backoff,
  then the drain stops with everything resumable (exit code 3).
"""

from __future__ import annotations

import re

import psycopg
import redis.exceptions

# SQLSTATE classes of the server or the link: worth retrying.
# 08 connection, 25 invalid transaction state (25006: a read-only standby after
# a failover), 40 rollback (deadlock, serialization), 53 insufficient resources,
# 55 object not in prerequisite state (lock not available), 57 operator
# intervention (timeouts, shutdown), 58 system error, XX internal error.
SERVER_CLASSES = ("08", "25", "40", "53", "55", "57", "58", "XX")
# SQLSTATE classes and codes of the configuration: a retry cannot fix them.
# 28 invalid authorization, 3D invalid catalog (database), 3F invalid schema,
# 42501 insufficient privilege.
CONFIG_CLASSES = ("28", "3D", "3F")
CONFIG_CODES = ("42501",)

# libpq reports a refused connection without a SQLSTATE: its message says why.
_CONFIG_MESSAGES = re.compile(
    r'database "[^"]*" does not exist|role "[^"]*" does not exist|password authentication failed'
    r"|authentication failed|no pg_hba\.conf entry|password is required|permission denied for database"
    r"|is not permitted to log in|server does not support SSL|invalid (?:sslmode|connection option)",
    re.IGNORECASE,
)

REDIS_TRANSIENT: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # includes a refused or dropped link
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    # redis-py's "TTL exhausted": more redirects or TRYAGAIN replies than it
    # follows, as while a slot moves between masters (resharding)
    redis.exceptions.ClusterError,
    redis.exceptions.MasterDownError,
    redis.exceptions.ReadOnlyError,  # a replica after a failover
    redis.exceptions.OutOfMemoryError,  # over maxmemory: a drain frees memory as it acks, others may too
    # A cluster client that found no master of a slot (a failover under way),
    # or no node it knows answering (redis-py >= 5.1: not RedisErrors)
    redis.exceptions.SlotNotCoveredError,
    *[c for c in (getattr(redis.exceptions, "RedisClusterUnreachableError", None),) if c is not None],
)
# Every error redis-py raises: its cluster client raises some that are no
# RedisError (SlotNotCoveredError, RedisClusterUnreachableError).
REDIS_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)
REDIS_CONFIG = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthorizationError,
    redis.exceptions.NoPermissionError,
)


# Redis replies that no retry can change: a database index the server lacks,
# a login or a command refused.
_REDIS_CONFIG_MESSAGES = re.compile(r"DB index is out of range|invalid DB index|NOAUTH|WRONGPASS|NOPERM", re.I)
# A cluster client pointed at a plain server (redis-py's words).
_NOT_A_CLUSTER = re.compile(r"cluster mode is not enabled|cluster support disabled", re.I)
_CLUSTER_DB = re.compile(r"db.{0,4} querystring option can only be 0 in cluster mode", re.I)


# A slot moving between masters: a command on several of its keys is refused
# (TRYAGAIN) while they are split between the two, and a script touching a key
# already moved fails (redis-py gives up on TRYAGAIN after about half a second).
_SLOT_MOVING = re.compile(r"^TRYAGAIN|non local key|slot (?:is )?being migrated", re.I)


def slot_moving(exc: BaseException) -> bool:
    """Whether ``exc`` says a Redis Cluster slot is being moved (resharding):
    the command works again once the move is done."""
    if isinstance(exc, (redis.exceptions.TryAgainError, redis.exceptions.ClusterError)):
        return not isinstance(exc, redis.exceptions.ClusterDownError)
    return isinstance(exc, redis.exceptions.ResponseError) and bool(_SLOT_MOVING.search(str(exc)))


def configuration_problem(exc: BaseException) -> str | None:
    """The reason ``exc`` is a configuration error, or None."""
    if isinstance(exc, redis.exceptions.AskError):  # MovedError too: a plain client on a cluster node
        return (
            f"this is a Redis Cluster node; it redirected a command ({type(exc).__name__[:-5].upper()}"
            f" {str(exc).strip()}), which a client opened for a plain server cannot follow: drop --no-cluster"
            " (SYNCWD_REDIS_CLUSTER=false) so the cluster is detected, or pass --cluster; in Python, open the client"
            " with syncwd_fast.connect_redis(url) or redis.RedisCluster"
        )
    if isinstance(exc, redis.exceptions.RedisClusterException):
        if _NOT_A_CLUSTER.search(str(exc)):
            return "--cluster (SYNCWD_REDIS_CLUSTER) names a Redis that is no cluster node: drop it for a plain server"
        if _CLUSTER_DB.search(str(exc)):
            return "--cluster (SYNCWD_REDIS_CLUSTER) with a database index in the URL: a cluster has database 0 only"
    if isinstance(exc, REDIS_CONFIG) or (
        isinstance(exc, redis.exceptions.ResponseError) and _REDIS_CONFIG_MESSAGES.search(str(exc))
    ):
        return f"Redis refused: {str(exc).strip()}"
    if isinstance(exc, psycopg.Error):
        state = exc.sqlstate
        if state and (state[:2] in CONFIG_CLASSES or state in CONFIG_CODES):
            return f"PostgreSQL refused: {str(exc).strip()} [SQLSTATE {state}]"
        if not state and isinstance(exc, psycopg.OperationalError):
            match = _CONFIG_MESSAGES.search(str(exc))
            if match:
                return f"PostgreSQL refused the connection: {_server_text(str(exc))}"
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may succeed: the link or the server, never the data or
    the configuration."""
    if isinstance(exc, REDIS_TRANSIENT):
        return not isinstance(exc, REDIS_CONFIG)
    if slot_moving(exc):
        return True
    if isinstance(exc, psycopg.Error):
        if configuration_problem(exc):
            return False
        state = exc.sqlstate
        if state:
            return state[:2] in SERVER_CLASSES
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))
    return False


def _server_text(message: str) -> str:
    """libpq's 'connection failed: connection to server at ... failed: FATAL: X' -> 'X'."""
    fatal = message.rfind("FATAL:")
    return " ".join((message[fatal + len("FATAL:") :] if fatal >= 0 else message).split())
