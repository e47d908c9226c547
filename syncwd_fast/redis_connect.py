"""The right redis-py client for a Redis URL: a ``redis.RedisCluster`` when
the URL names a node of a Redis Cluster (any node), a ``redis.Redis`` else.

Detection is one round trip on the connection a plain client would use
anyway (``INFO cluster``: ``cluster_enabled:1``), so a standalone Redis
costs nothing more. Where the ACL denies INFO (it is @dangerous, which least
privilege leaves out) or it is renamed away, ``CLUSTER INFO`` answers, then
``READONLY`` (a connection command, harmless on a primary): a plain server
refuses both with "cluster support disabled". Where every probe is denied, or
Redis cannot be reached, the URL is taken as a plain server and a warning
says so; a MOVED reply later on is then a configuration error that names
the cause (faults.configuration_problem)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.exceptions

from .connection import redis_from_url
from .errors import ConfigurationError

log = logging.getLogger("syncwd_fast")

_NO_CLUSTER = "cluster support disabled"  # a plain server's reply to a cluster command
_SELECT_IN_CLUSTER = "SELECT is not allowed in cluster mode"


def detect_cluster(client: Any) -> bool | None:
    """Whether the server ``client`` (a ``redis.Redis``) talks to is a Redis Cluster node: True or
    False, or None when the ACL (or a rename) refuses every probe. Errors of
    the link or the login are raised."""
    try:
        info = client.info("cluster")
    except redis.exceptions.ResponseError as exc:
        if not _refused(exc):
            raise
    else:
        return str(info.get("cluster_enabled", 0)) == "1"
    for probe in (("CLUSTER", "INFO"), ("READONLY",)):
        try:
            client.execute_command(*probe)
        except redis.exceptions.ResponseError as exc:
            if _NO_CLUSTER in str(exc):
                return False
            if not _refused(exc):
                raise
        else:
            return True
    return None


def _refused(exc: redis.exceptions.ResponseError) -> bool:
    """Denied by the ACL, or the command renamed away: another probe may work."""
    return isinstance(exc, redis.exceptions.NoPermissionError) or "unknown command" in str(exc).lower()


def connect_redis(url: str, *, cluster: bool | None = None, timeout_s: float = 30.0, **options: Any) -> Any:
    """A synchronous redis-py client for ``url`` with syncwd-fast's timeouts,
    keepalive and bounded retries: a ``redis.RedisCluster`` for a cluster node,
    a ``redis.Redis`` for a plain server. ``cluster``: None detects it (one
    round trip, see detect_cluster), True or False forces it. ``options`` go to
    ``from_url`` (e.g. ``decode_responses=True``).

    Raises ConfigurationError for a cluster node named with a database index
    other than 0 (a cluster has database 0 only)."""
    if cluster is not None:
        return redis_from_url(url, cluster=cluster, timeout_s=timeout_s, **options)
    client = redis_from_url(url, timeout_s=timeout_s, **options)
    try:
        found = detect_cluster(client)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        if isinstance(exc, (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)):
            raise  # redis-py's ConnectionErrors too, but a login refused is configuration
        if _SELECT_IN_CLUSTER not in str(exc):
            # The drain's own retries say what is wrong with the link, as they always did.
            log.warning(
                "cannot reach Redis to tell whether it is a Redis Cluster node (%s: %s): taken as a plain server;"
                " pass --cluster (SYNCWD_REDIS_CLUSTER=true) if it is a cluster",
                type(exc).__name__,
                str(exc).strip(),
            )
            return client
        found = True
    except redis.exceptions.ResponseError as exc:
        if _SELECT_IN_CLUSTER not in str(exc):
            raise
        found = True
    if found is None:
        log.warning(
            "cannot tell whether Redis is a Redis Cluster node (INFO, CLUSTER INFO and READONLY refused):"
            " taken as a plain server; pass --cluster (SYNCWD_REDIS_CLUSTER=true) if it is a cluster, or"
            " --no-cluster (SYNCWD_REDIS_CLUSTER=false) to say it is not"
        )
        return client
    if not found:
        return client
    client.close()
    db = _database(url)
    if db:
        raise ConfigurationError(
            f"the Redis URL names database {db}, but it is a Redis Cluster node: a cluster has database 0 only"
        )
    return redis_from_url(url, cluster=True, timeout_s=timeout_s, **options)


def _database(url: str) -> int:
    """The database index a Redis URL names (its path or ``?db=``), 0 if none."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    for item in parts.query.split("&"):
        name, _, value = item.partition("=")
        if name == "db" and value.isdigit():
            return int(value)
    return int(path) if path.isdigit() else 0
