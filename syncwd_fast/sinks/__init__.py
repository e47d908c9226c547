"""Sinks: where drained batches go (base.py has the contract).

A table's sink is the one given for it (``FastDrainer(..., sinks={name:
sink})``, ``--sink TABLE=package.module:factory``), else the built-in sink
the DSN's scheme names: PostgreSQL for a libpq DSN or a ``postgresql://``
URL, MariaDB/MySQL for ``mysql://`` or ``mariadb://`` (the extra
``syncwd-fast[mysql]``).
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .base import Batch, Record, Sink, SinkFactory, SinkOptions, Written

__all__ = [
    "Batch",
    "Record",
    "Sink",
    "SinkFactory",
    "SinkOptions",
    "Written",
    "builtin_sink",
    "load_factory",
    "scheme",
]

MYSQL_SCHEMES = ("mysql", "mariadb")
POSTGRES_SCHEMES = ("postgres", "postgresql")


def scheme(dsn: str) -> str:
    """The DSN's URL scheme, lower-case; "" for a libpq keyword DSN."""
    return urlsplit(dsn).scheme.lower() if "://" in dsn else ""


def builtin_sink(dsn: str, options: SinkOptions | None = None) -> Sink:
    """The built-in sink the DSN's scheme names."""
    kind = scheme(dsn)
    if kind in MYSQL_SCHEMES:
        try:
            mysql = importlib.import_module(f"{__name__}.mysql")
        except ImportError as exc:  # the driver, an optional extra
            raise ConfigurationError(
                f"a {kind}:// DSN needs the MariaDB/MySQL driver: pip install 'syncwd-fast[mysql]' ({exc})"
            ) from exc
        sink: Sink = mysql.MySQLSink(dsn, options)
        return sink
    if kind in ("", *POSTGRES_SCHEMES):
        from .postgres import PostgresSink

        return PostgresSink(dsn, options)
    raise ConfigurationError(f"unknown DSN scheme {kind!r}: use a PostgreSQL DSN ('dbname=app', 'postgresql://...')")


def load_factory(spec: str) -> SinkFactory:
    """``package.module:factory`` imported; the factory is called with the
    DSN and the SinkOptions and returns a Sink."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigurationError(f"a sink factory is package.module:factory, got {spec!r}")
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import the sink module {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigurationError(f"{module_name!r} has no {attr!r} (sink factory {spec!r})") from None
    if not callable(target):
        raise ConfigurationError(f"sink factory {spec!r} is not callable")
    return target
