"""Small helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
import psycopg
import pytest

from syncwd_fast.keys import PartitionKeys


def rows(db: psycopg.Connection[Any], table: str, order: str = "1") -> list[tuple[Any, ...]]:
    return db.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()


def count(db: psycopg.Connection[Any], table: str) -> int:
    return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # type: ignore[index]


def dead_entries(r: Any, keys: PartitionKeys) -> dict[str, dict[str, Any]]:
    return {k.decode(): orjson.loads(v) for k, v in r.hgetall(keys.dead).items()}


def dead_of(r: Any, table: Any, prefix: str) -> dict[str, dict[str, Any]]:
    """The dead letters of every partition of ``table``."""
    out: dict[str, dict[str, Any]] = {}
    for n in range(table.partitions):
        out.update(dead_entries(r, table.keys(n, prefix)))
    return out


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m syncwd_fast`` as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "syncwd_fast", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def last_json(stdout: str) -> dict[str, Any]:
    result: dict[str, Any] = orjson.loads(stdout.strip().splitlines()[-1])
    return result


def drain_command(redis_url: str, dsn: str, prefix: str, *extra: str) -> list[str]:
    """The argv of ``syncwd-fast drain`` for a subprocess the test controls."""
    command = [sys.executable, "-m", "syncwd_fast", "drain", "--redis", redis_url, "--dsn", dsn]
    return [*command, "--prefix", prefix, *extra]


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


# The ids of a run's in-flight records (pop number -> cmsgpack array of ids).
_IN_FLIGHT = """
local out = {}
for _, packed in ipairs(redis.call('HVALS', KEYS[1])) do
  for _, id in ipairs(cmsgpack.unpack(packed)) do out[#out + 1] = id end
end
return out
"""


def in_flight(r: Any, keys: PartitionKeys, run: str) -> list[str]:
    """Every id in flight in ``run`` (an id popped twice appears twice)."""
    return sorted(i.decode() for i in r.eval(_IN_FLIGHT, 1, keys.inflight(run)))


_REDO = """
local out = {}
for _, packed in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  for _, id in ipairs(cmsgpack.unpack(packed)) do out[#out + 1] = id end
end
return out
"""


def redo(r: Any, keys: PartitionKeys, run: str) -> list[str]:
    """Every id of ``run``'s records waiting to be popped again (after an adoption)."""
    return sorted(i.decode() for i in r.eval(_REDO, 1, keys.run(run) + ":redo"))


def merge_via(impl: str, dsn: str, table: str, batches: list[list[tuple[str, bytes]]]) -> set[str]:
    """Decode ("c" or "python") and merge each batch as the drain does, into
    ``table`` keyed by ``id``; the dead-lettered ids."""
    conn, decoder, merger = merger_for(dsn, table, pure=impl == "python")
    try:
        dead: set[str] = set()
        for batch in batches:
            decoded = decoder.decode([rid for rid, _ in batch], [doc for _, doc in batch])
            result = merger.merge(decoded)
            dead |= {rid for rid, _ in decoded.dead} | {rid for rid, _ in result.dead}
        return dead
    finally:
        conn.close()


class Statements:
    """Counts the statements the sinks send (the C and pure paths alike)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import pymysql.cursors

        self.count = 0
        for cls, name in ((psycopg.Cursor, "execute"), (psycopg.Cursor, "copy"), (pymysql.cursors.Cursor, "execute")):
            monkeypatch.setattr(cls, name, self._counted(getattr(cls, name)))

    def _counted(self, original: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        return counted


def merger_for(dsn: str, table: str, pure: bool = False, **options: Any) -> tuple[psycopg.Connection[Any], Any, Any]:
    """A connection (``connect``'s options), and the PostgreSQL sink's
    decoder (``pure``: the Python twin) and merger of ``table`` (keyed by
    ``id``) on it."""
    from syncwd_fast.connection import connect
    from syncwd_fast.sinks.postgres.decode import Decoder
    from syncwd_fast.sinks.postgres.merge import Merger
    from syncwd_fast.sinks.postgres.schema import load_schema
    from syncwd_fast.table import Table

    conn = connect(dsn, **options)
    schema = load_schema(conn, Table(table, key="id"))
    return conn, Decoder(schema, pure=pure), Merger(conn, schema, (0, 0), lambda: True)


def merge_records(dsn: str, table: str, records: list[dict[str, Any]]) -> Any:
    """``records`` (with an ``id``) merged in one batch as the drain merges
    them, into ``table``; the merge's result."""
    conn, decoder, merger = merger_for(dsn, table)
    try:
        return merger.merge(decoder.decode([str(r["id"]) for r in records], [orjson.dumps(r) for r in records]))
    finally:
        conn.close()
