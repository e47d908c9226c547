"""MariaDB/MySQL errors sorted the way faults.py sorts PostgreSQL's: a
record's (dead-lettered with the server's message), the configuration's
(exit 2), a transient fault (retried), or the schema's (read it again).
The driver's exception classes differ between drivers for one error, so the
error number decides."""

from __future__ import annotations

import pymysql

# Errors of the link or the server, worth retrying: can't connect (2002,
# 2003, 2005), gone away / lost (2006, 2013, 2055, 4031), too many connections,
# shutdown, lock wait timeout, deadlock, read-only (a failover), statement or
# query interrupted or timed out, connection killed, network errors.
TRANSIENT = frozenset(
    {
        2002,
        2003,
        2005,
        2006,
        2013,
        2014,
        2055,
        4031,
        1040,
        1053,
        1077,
        1152,
        1153,
        1158,
        1159,
        1160,
        1161,
        1205,
        1213,
        1290,
        1317,
        1836,
        1927,
        1969,
        3024,
        3098,
        1792,
    }
)
# Nothing a retry can fix: access denied (database, login, command, column,
# privilege), unknown database, authentication protocol.
CONFIGURATION = frozenset({1044, 1045, 1049, 1142, 1143, 1227, 1251, 1698, 1370})
# The table or a column is gone: read the schema again.
SCHEMA = frozenset({1146, 1054})
# The data: out of range, truncated, incorrect value, too long, NULL into
# NOT NULL, no default, foreign keys, CHECK (MariaDB 4025, MySQL 3819),
# a duplicate in another unique index, a trigger's SIGNAL, invalid JSON,
# an illegal value in an expression or function.
DATA = frozenset(
    {
        1048,
        1062,
        1263,
        1264,
        1265,
        1292,
        1364,
        1366,
        1367,
        1406,
        1411,
        1416,
        1451,
        1452,
        1644,
        1690,
        3140,
        3819,
        4025,
        4078,
        3156,
        1022,
        1586,
        1557,
        1761,
        1762,
        4022,
        4108,
    }
)


def errno(exc: BaseException) -> int | None:
    if isinstance(exc, pymysql.err.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


# SQLSTATE classes of the data: a data exception, an integrity violation, an
# application's SIGNAL (a trigger refusing a row with an error number of its own).
DATA_CLASSES = ("22", "23", "45")


# MariaDB's JSON errors (4036-4048: invalid JSON, too deep, a bad path): a
# value's, when a statement reads a record's JSON.
JSON_ERRORS = range(4036, 4049)


def is_data_error(exc: BaseException) -> bool:
    code = errno(exc)
    if code in DATA or code in JSON_ERRORS:
        return True
    if code in TRANSIENT or code in CONFIGURATION or code in SCHEMA:
        return False
    state = getattr(exc, "sqlstate", None) or ""
    return state[:2] in DATA_CLASSES


def is_transient(exc: BaseException) -> bool:
    code = errno(exc)
    if code is None:
        # The driver's own link errors carry no server number.
        return isinstance(exc, (pymysql.err.OperationalError, pymysql.err.InterfaceError))
    return code in TRANSIENT


def configuration_problem(exc: BaseException) -> str | None:
    code = errno(exc)
    if code in CONFIGURATION:
        return f"MySQL refused: {describe(exc)}"
    return None


def describe(exc: BaseException) -> str:
    code = errno(exc)
    message = exc.args[1] if len(exc.args) > 1 else str(exc)
    return f"{str(message).strip()} [MySQL error {code}]" if code is not None else str(exc).strip()
