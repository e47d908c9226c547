"""Reaching a Redis master through Redis Sentinel.

`redis_from_sentinel` returns redis-py's ``Sentinel(...).master_for(service)``
client: its `SentinelConnectionPool` asks the sentinels for the master
whenever it connects, and a connection to a master that was demoted fails
(READONLY becomes a ConnectionError), so every call after a failover reaches
the new master; the writer and the drain take it like any ``redis.Redis``.

The master's own options (username, password, database, TLS) come from a
Redis URL as ``--redis`` gives them; its host and port are the sentinels'
answer. A URL may also name the sentinels itself::

    redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db][?option=value...]

(``rediss+sentinel://`` for TLS to the master; the port defaults to 26379.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from redis.connection import SSLConnection
from redis.exceptions import RedisError
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelManagedConnection

from .connection import client_options
from .errors import ConfigurationError
from .faults import configuration_problem

DEFAULT_PORT = 26379
SCHEMES = {"redis+sentinel": "redis", "rediss+sentinel": "rediss"}


def parse_sentinels(spec: str) -> list[tuple[str, int]]:
    """``host:port[,host:port...]`` (``[::1]:26379`` for IPv6; the port
    defaults to 26379) as (host, port) pairs."""
    found = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part.startswith("["):
            host, _, rest = part[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else rest
        elif part.count(":") == 1:
            host, port = part.split(":")
        else:
            host, port = part, ""
        try:
            number = int(port) if port else DEFAULT_PORT
        except ValueError:
            number = -1
        if not host or not 0 < number < 65536:
            raise ConfigurationError(f"--sentinel takes host:port[,host:port...], got {spec!r} ({part!r} is not one)")
        found.append((host, number))
    if not found:
        raise ConfigurationError(f"--sentinel takes host:port[,host:port...], got {spec!r}")
    return found


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SCHEMES


def split_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, str]:
    """``redis+sentinel://...`` as (sentinels, service, a Redis URL of the
    master's options: user, password, database, query, TLS)."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    service, _, db = parts.path.lstrip("/").partition("/")
    if not service or "/" in db:
        raise ConfigurationError(
            "a Sentinel URL is redis+sentinel://[[user]:password@]host:port[,host:port]/service[/db],"
            f" got one without {'a service' if not service else 'a single database number'}"
        )
    netloc = f"{userinfo}@sentinel" if userinfo else "sentinel"
    master = urlunsplit((SCHEMES[parts.scheme.lower()], netloc, "/" + (db or "0"), parts.query, ""))
    return parse_sentinels(hosts), unquote(service), master


def master_options(redis_url: str) -> dict[str, Any]:
    """What a Redis URL says of the master, less its address: username,
    password, database, query options, and ``ssl`` for ``rediss://``."""
    from redis.connection import UnixDomainSocketConnection, parse_url

    try:
        options = dict(parse_url(redis_url))  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ConfigurationError(f"--redis: {exc}") from exc
    connection_class = options.pop("connection_class", None)
    if connection_class is UnixDomainSocketConnection:
        raise ConfigurationError("--redis names a unix socket: with Sentinel the master is reached over TCP")
    if connection_class is SSLConnection:
        options["ssl"] = True
    for address in ("host", "port", "path"):
        options.pop(address, None)
    return options


def redis_from_sentinel(
    sentinels: str | Sequence[tuple[str, int]],
    service: str,
    *,
    redis_url: str | None = None,
    sentinel_password: str | None = None,
    sentinel_username: str | None = None,
    timeout_s: float = 30.0,
) -> Any:
    """A client of ``service``'s master as the sentinels name it, with the
    timeouts and retries of `connection.redis_from_url`; ``redis_url`` gives
    the master's username, password, database and TLS (its host and port are
    not used). The sentinels are asked with ``sentinel_password`` (and
    ``sentinel_username``) when they require one (their ``requirepass``)."""
    if not service:
        raise ConfigurationError("--sentinel needs --service (SYNCWD_SERVICE): the name the sentinels monitor")
    addresses = parse_sentinels(sentinels) if isinstance(sentinels, str) else list(sentinels)
    options = client_options(timeout_s)
    options.update(master_options(redis_url) if redis_url else {})
    # Sentinels answer at once or not at all: a short timeout lets discovery move on to the next.
    asked: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0, "socket_keepalive": True}
    if sentinel_password:
        asked["password"] = sentinel_password
    if sentinel_username:
        asked["username"] = sentinel_username
    options["connection_class"] = _FollowingSSLConnection if options.pop("ssl", False) else _FollowingConnection
    return _Sentinel(addresses, sentinel_kwargs=asked).master_for(service, **options)


def redis_from_sentinel_url(url: str, *, sentinel_password: str | None = None, timeout_s: float = 30.0) -> Any:
    """`redis_from_sentinel` of a ``redis+sentinel://`` URL."""
    sentinels, service, master_url = split_sentinel_url(url)
    return redis_from_sentinel(
        sentinels, service, redis_url=master_url, sentinel_password=sentinel_password, timeout_s=timeout_s
    )


class _FollowingConnection(SentinelManagedConnection):
    """A connection that reconnects to the master the sentinels name now.

    redis-py's sentinel connection asks the sentinels only when the pool
    hands it out; dropped in the middle of a call (a retry of its Retry, a
    drain's run of calls on one connection, a single-connection client) it
    reconnects to the address it had: the old master, dead or demoted."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()  # type: ignore[no-untyped-call]
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class _FollowingSSLConnection(_FollowingConnection, SSLConnection):
    pass


class _Sentinel(Sentinel):
    """A service no sentinel knows is a configuration error (exit 2), not a
    master down (retried): a sentinel lists the services it monitors,
    failover or not."""

    def discover_master(self, service_name: str) -> Any:
        try:
            return super().discover_master(service_name)
        except MasterNotFoundError:
            known: set[str] | None = None
            refused = None
            failed: list[str] = []  # what each sentinel that did not answer said
            not_sentinels: list[str] = []
            for sentinel in self.sentinels:
                address = _address(sentinel)
                try:
                    known = (known or set()) | {str(name) for name in sentinel.sentinel_masters()}
                except RedisError as exc:  # an unreachable sentinel says nothing; one that refuses us does
                    refused = refused or configuration_problem(exc)
                    failed.append(f"{address}: {type(exc).__name__}: {str(exc).strip()}")
                    if "unknown command" in str(exc).lower():
                        not_sentinels.append(address)
            if known is None and refused:
                raise ConfigurationError(
                    f"the sentinels: {refused} (--sentinel-password, SYNCWD_SENTINEL_PASSWORD)"
                ) from None
            if known is None and not_sentinels:
                raise ConfigurationError(
                    f"--sentinel (SYNCWD_SENTINEL) names {', '.join(not_sentinels)}, which is no sentinel (it does not"
                    " know SENTINEL): give the sentinels' addresses (port 26379 by default), not a Redis server's"
                ) from None
            if known is not None and service_name not in known:
                raise ConfigurationError(
                    f"the sentinels monitor no service {service_name!r} (--service, SYNCWD_SERVICE); they monitor:"
                    f" {', '.join(sorted(known)) or 'none'}"
                ) from None
            # redis-py's own message holds the repr of each sentinel's client (a kilobyte of internals).
            said = "no sentinel answered" if known is None else "the sentinels name no master up (failing over?)"
            raise MasterNotFoundError(
                f"no master found for service {service_name!r}: {said}" + (f"; {'; '.join(failed)}" if failed else "")
            ) from None


def _address(sentinel: Any) -> str:
    """host:port of a sentinel's client, as --sentinel names it."""
    kwargs = sentinel.connection_pool.connection_kwargs
    host = str(kwargs.get("host", "?"))
    return f"[{host}]:{kwargs.get('port')}" if ":" in host else f"{host}:{kwargs.get('port')}"
