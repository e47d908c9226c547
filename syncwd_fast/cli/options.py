"""Options shared by the commands (each reads one environment variable) and the Redis client they name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..errors import ConfigurationError
from ..keys import DEFAULT_PREFIX
from ..redis_connect import connect_redis
from ..sentinel import is_sentinel_url, redis_from_sentinel, redis_from_sentinel_url
from ..servers import DEFAULT_REDIS_URL
from .output import masker

F = TypeVar("F", bound=Callable[..., Any])


def option(*decls: str, env: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option that reads one documented environment variable."""
    return click.option(*decls, envvar=env, show_envvar=True, **kwargs)


SENTINEL = "syncwd_fast.sentinel"  # ctx.meta key: --sentinel, --service, --sentinel-password


def open_redis(redis_url: str, cluster: bool | None) -> Any:
    """The client for --redis: the master Sentinel names (--sentinel/--service
    or a redis+sentinel:// URL), else a cluster's when the URL names a cluster
    node (detected unless --cluster/--no-cluster says), else a plain one."""
    masker.add(redis_url)
    ctx = click.get_current_context(silent=True)
    through = dict(ctx.meta.get(SENTINEL, {})) if ctx else {}
    if any(through.values()) or is_sentinel_url(redis_url):
        return open_sentinel(redis_url, cluster, **through)
    return connect_redis(redis_url, cluster=cluster)


def open_sentinel(
    redis_url: str,
    cluster: bool | None,
    sentinel: str | None = None,
    service: str | None = None,
    sentinel_password: str = "",
) -> Any:
    """The master a --sentinel/--service pair or a redis+sentinel:// URL names."""
    if sentinel_password and len(sentinel_password) >= 3:
        masker.secrets.add(sentinel_password)
    if cluster:
        raise ConfigurationError("--cluster with Sentinel: a Redis Cluster has no sentinels, drop one or the other")
    if is_sentinel_url(redis_url):
        if sentinel or service:
            raise ConfigurationError("--redis is a redis+sentinel:// URL: give it or --sentinel/--service, not both")
        return redis_from_sentinel_url(redis_url, sentinel_password=sentinel_password or None)
    if not sentinel:
        raise ConfigurationError("--service needs --sentinel (SYNCWD_SENTINEL): the sentinels to ask for its master")
    return redis_from_sentinel(
        sentinel, service or "", redis_url=redis_url, sentinel_password=sentinel_password or None
    )


def _keep_sentinel(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """--sentinel and its kin are read by open_redis, not passed to each command."""
    ctx.meta.setdefault(SENTINEL, {})[str(param.name)] = value
    return value


def redis_options(f: Any) -> Any:
    f = option("--prefix", env="SYNCWD_PREFIX", default=DEFAULT_PREFIX, show_default=True, help="Redis key prefix.")(f)
    f = option(
        "--cluster/--no-cluster",
        env="SYNCWD_REDIS_CLUSTER",
        default=None,
        help="Force a Redis Cluster client (--cluster) or a plain one (--no-cluster). Default: detected from the"
        " node the URL names (INFO cluster).",
    )(f)
    f = option(
        "--sentinel-password",
        env="SYNCWD_SENTINEL_PASSWORD",
        default="",
        expose_value=False,
        callback=_keep_sentinel,
        help="Password of the sentinels themselves (their requirepass); the master's is in --redis.",
    )(f)
    f = option(
        "--service",
        env="SYNCWD_SERVICE",
        default=None,
        expose_value=False,
        callback=_keep_sentinel,
        help="Name of the master the sentinels monitor (with --sentinel).",
    )(f)
    f = option(
        "--sentinel",
        env="SYNCWD_SENTINEL",
        default=None,
        metavar="HOST:PORT[,HOST:PORT]",
        expose_value=False,
        callback=_keep_sentinel,
        help="Reach the master through these Redis Sentinels (with --service); --redis then gives only the master's"
        " user, password, database and TLS. Or --redis redis+sentinel://host:port,host:port/service/db.",
    )(f)
    f = option(
        "--redis", "redis_url", env="SYNCWD_REDIS_URL", default=DEFAULT_REDIS_URL, show_default=True, help="Redis URL."
    )(f)
    return f


def pop_option(what: str) -> Callable[[F], F]:
    """--pop: ids per Redis call of a drain (FastDrainer(pop=))."""
    return option("--pop", env="SYNCWD_POP", type=click.IntRange(1, 5000), default=125, show_default=True, help=what)


def discover_option(what: str) -> Callable[[F], F]:
    return option("--discover", is_flag=True, env="SYNCWD_DISCOVER", help=what)


def json_option(what: str) -> Callable[[F], F]:
    return option("--json", "as_json", is_flag=True, env="SYNCWD_JSON", help=what)


batch_option = option(
    "--batch",
    env="SYNCWD_BATCH",
    type=click.IntRange(1, 100_000),
    default=5000,
    show_default=True,
    help="Records per transaction.",
)
workers_option = option(
    "--workers",
    env="SYNCWD_WORKERS",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Partitions drained in parallel.",
)


# click.ParamType is generic from click 8.2 on; 8.1 is supported, so not subscripted.
class Duration(click.ParamType):  # type: ignore[type-arg]
    """A span of time as schedule --every reads it (500ms, 10s, 5m, 12h, 30d), as seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        from ..schedule import parse_interval

        try:
            return parse_interval(str(value))
        except ValueError as exc:
            self.fail(str(exc).replace("invalid interval", "invalid duration"), param, ctx)


DURATION = Duration()


def table_option(f: Any) -> Any:
    return option(
        "--table",
        "tables",
        env="SYNCWD_TABLE",
        multiple=True,
        help="Only this table (repeatable; the variable takes names separated by spaces).",
    )(f)
