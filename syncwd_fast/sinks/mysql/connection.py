"""MariaDB/MySQL connections from a ``mysql://`` (or ``mariadb://``) DSN, in
strict SQL mode with utf8mb4, UTC and timeouts that cannot hang a drain."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql

from ...errors import ConfigurationError

# Strict: a value the column cannot hold is an error (the record's dead
# letter), never a silent truncation, zero date or clamped number.
SQL_MODE = "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"

# Query parameters passed to the driver as they are (type, name).
_PARAMS: dict[str, Any] = {
    "connect_timeout": int,
    "read_timeout": int,
    "write_timeout": int,
    "unix_socket": str,
    "ssl_ca": str,
    "ssl_cert": str,
    "ssl_key": str,
    "ssl_verify_cert": lambda v: v.lower() in ("1", "true", "yes"),
    "ssl_verify_identity": lambda v: v.lower() in ("1", "true", "yes"),
}


def parse_dsn(dsn: str) -> dict[str, Any]:
    """``mysql://user:password@host:port/database?param=value`` as the
    driver's connect arguments."""
    parts = urlsplit(dsn)
    if parts.scheme.lower() not in ("mysql", "mariadb"):
        raise ConfigurationError(f"not a mysql:// or mariadb:// DSN: {parts.scheme}://...")
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ConfigurationError("a mysql:// DSN names its database: mysql://user:password@host:port/database")
    try:
        port = parts.port or 3306
    except ValueError as exc:
        raise ConfigurationError(f"invalid port in the MySQL DSN: {exc}") from None
    args: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": port,
        "user": unquote(parts.username) if parts.username else "root",
        "password": unquote(parts.password) if parts.password else "",
        "database": database,
        "connect_timeout": 10,
    }
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        convert = _PARAMS.get(name)
        if convert is None:
            raise ConfigurationError(f"unknown MySQL DSN parameter {name!r} (known: {', '.join(sorted(_PARAMS))})")
        try:
            args[name] = convert(value)
        except ValueError:
            raise ConfigurationError(f"invalid value for MySQL DSN parameter {name!r}: {value!r}") from None
    ssl = {k[4:]: args.pop(k) for k in [k for k in args if k.startswith("ssl_")]}
    if ssl:
        args["ssl"] = {k: v for k, v in ssl.items() if k in ("ca", "cert", "key")}
        for flag in ("verify_cert", "verify_identity"):
            if flag in ssl:
                args[f"ssl_{flag}"] = ssl[flag]
    return args


def connect(dsn: str, *, statement_timeout_s: float = 300.0, lock_timeout_s: float = 60.0) -> pymysql.Connection:
    """A connection in explicit-transaction mode (autocommit off), strict,
    utf8mb4, UTC and READ COMMITTED, whose reads and writes time out (a dead
    link or a stalled server ends in an error, not a hang)."""
    args = parse_dsn(dsn)
    args.setdefault("read_timeout", int(statement_timeout_s) + 10)
    args.setdefault("write_timeout", int(statement_timeout_s) + 10)
    conn = pymysql.connect(**args, charset="utf8mb4", autocommit=False, local_infile=False)
    with conn.cursor() as cur:
        # As PostgreSQL's default: each statement sees what committed before it
        # (REPEATABLE READ would judge "is this row new?" by a snapshot that an
        # application's insert since could contradict).
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cur.execute(
            "SET SESSION sql_mode = %s, time_zone = '+00:00', innodb_lock_wait_timeout = %s",
            (SQL_MODE, max(1, int(lock_timeout_s))),
        )
        try:  # MariaDB: every statement, in seconds (MySQL's max_execution_time covers SELECT only)
            cur.execute("SET SESSION max_statement_time = %s", (float(statement_timeout_s),))
        except pymysql.err.MySQLError:
            pass
        # A drainer stalled inside a batch's transaction holds the partition's
        # GET_LOCK and its row locks: the server ends such a session soon after
        # its lease is gone (MariaDB), or once it idles that long at all (MySQL).
        try:
            cur.execute("SET SESSION idle_transaction_timeout = %s", (max(1, int(statement_timeout_s)),))
        except pymysql.err.MySQLError:
            cur.execute("SET SESSION wait_timeout = %s", (max(1, int(statement_timeout_s)),))
    conn.commit()
    return conn


def max_packet(conn: pymysql.Connection) -> int:
    """The server's max_allowed_packet: no statement may be longer."""
    with conn.cursor() as cur:
        cur.execute("SELECT @@max_allowed_packet")
        row = cur.fetchone()
    conn.commit()
    return int(row[0]) if row else 1 << 22


def is_mariadb(conn: pymysql.Connection) -> bool:
    return "mariadb" in conn.get_server_info().lower()
