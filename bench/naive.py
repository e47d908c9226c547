"""The original syncwd's drain, for comparison: SPOP 500 ids, then per id one
GET, ``orjson.loads`` and one ``INSERT ... ON CONFLICT DO UPDATE`` committed on
its own (psycopg, autocommit off: one transaction per row)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from syncwd_fast.keys import PartitionKeys
from syncwd_fast.table import Table

SPOP_COUNT = 500


def _upsert(table: Table, columns: tuple[str, ...]) -> sql.Composed:
    key = table.key_columns
    return sql.SQL("INSERT INTO {table} ({cols}) VALUES ({values}) ON CONFLICT ({key}) DO UPDATE SET {sets}").format(
        table=sql.Identifier(*table.name.split(".")),
        cols=sql.SQL(", ").join(map(sql.Identifier, columns)),
        values=sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        key=sql.SQL(", ").join(map(sql.Identifier, key)),
        sets=sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns if c not in key
        ),
    )


def drain(client: Any, dsn: str, table: Table, prefix: str) -> tuple[int, float]:
    """Drain the dirty sets of ``table`` under ``prefix`` row by row; returns (rows, seconds)."""
    queries: dict[tuple[str, ...], sql.Composed] = {}
    done = 0
    with psycopg.connect(dsn) as conn:
        t0 = time.perf_counter()
        for number in range(table.partitions):
            keys = PartitionKeys(prefix, table.name, number)
            while ids := client.spop(keys.dirty, SPOP_COUNT):
                for raw_id in ids:
                    value = client.get(keys.value(raw_id.decode()))
                    if value is None:
                        continue
                    row = orjson.loads(value)
                    columns = tuple(row)
                    query = queries.get(columns)
                    if query is None:
                        query = queries[columns] = _upsert(table, columns)
                    conn.execute(query, [Jsonb(v) if isinstance(v, (dict, list)) else v for v in row.values()])
                    conn.commit()
                    done += 1
        seconds = time.perf_counter() - t0
    return done, seconds
