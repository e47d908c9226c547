"""The drain's limit: PostgreSQL's cheapest bulk path for the same final rows,
already typed in Python memory: text COPY of typed tuples into a kept temp
stage with the target's types, then ``INSERT ... ON CONFLICT DO UPDATE``, one
transaction per batch, one connection, no Redis. It shares no code with the
drain it judges (design §7). ``merge_all`` is the extra figure: the drain's own
``Merger`` on the JSON values.

The values are read from Redis before the clock starts (MGET, untimed): they
are then exactly the bytes the drain will merge, and compact (a list of
``orjson.dumps`` results would pin ~4 kB of memory per value).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql

from syncwd_fast.connection import connect
from syncwd_fast.sinks.postgres.decode import Decoder
from syncwd_fast.sinks.postgres.merge import Merger
from syncwd_fast.sinks.postgres.schema import load_schema
from syncwd_fast.table import Table

MGET_CHUNK = 10_000


def load_values(client: Any, table: Table, prefix: str, records: int) -> list[tuple[str, bytes]]:
    """(id, JSON bytes) of records 0..records-1 as Redis holds them under ``prefix``."""
    values: list[tuple[str, bytes]] = []
    for start in range(0, records, MGET_CHUNK):
        ids = [str(i) for i in range(start, min(start + MGET_CHUNK, records))]
        keys = [table.keys(table.partition(i), prefix).value(i) for i in ids]
        for record_id, doc in zip(ids, client.mget(keys)):
            if doc is None:
                raise RuntimeError(f"limit: record {record_id} of {table.name} is missing under {prefix!r}")
            values.append((record_id, doc))
    return values


def drain_order(client: Any, table: Table, prefix: str, batch: int) -> list[int]:
    """The ids in the key order the drain gives PostgreSQL: the order its pops
    read them (SSCAN of each partition's dirty set, which the drain's
    snapshot renames to the run set it scans: the same hash table, so the
    same order whatever the COUNT), cut into batches of ``batch``, each sorted
    by key (merge.key_order). Read before the drain, untimed."""
    order: list[int] = []
    for number in range(table.partitions):
        ids = [int(i) for i in client.sscan_iter(table.keys(number, prefix).dirty, count=1000)]
        for start in range(0, len(ids), batch):
            order.extend(sorted(ids[start : start + batch]))
    return order


def typed_rows(values: list[tuple[str, bytes]], columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """The values as tuples of Python values of the columns' types, made
    before the clock starts: ints, str, datetime; a json column's value as its
    JSON text (what a text COPY sends for it)."""
    out = []
    for _, doc in values:
        row = orjson.loads(doc)
        typed = []
        for column in columns:
            value = row.get(column)
            if column == "updated_at" and value is not None:
                value = datetime.fromisoformat(value)
            elif isinstance(value, (dict, list)):
                value = orjson.dumps(value).decode()
            typed.append(value)
        out.append(tuple(typed))
    return out


def copy_merge_all(
    dsn: str, table: Table, rows: list[tuple[Any, ...]], columns: tuple[str, ...], batch: int
) -> tuple[int, float]:
    """Text COPY of ``rows`` into a kept temp stage of the target's types,
    then INSERT ... ON CONFLICT (id) DO UPDATE, one transaction per batch;
    returns (rows merged, seconds spent merging)."""
    target = sql.Identifier(*table.name.split("."))
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns[1:])
    copy = sql.SQL("COPY limit_stage ({}) FROM STDIN").format(cols)
    upsert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM limit_stage ON CONFLICT (id) DO UPDATE SET {}").format(
        target, cols, cols, updates
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TEMP TABLE limit_stage (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS").format(target)
        )
        merged, seconds = 0, 0.0
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            t0 = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(copy) as writer:
                    for row in chunk:
                        writer.write_row(row)
                cur.execute(upsert)
                merged += cur.rowcount
            seconds += time.perf_counter() - t0
        return merged, seconds


def merge_all(dsn: str, table: Table, values: list[tuple[str, bytes]], batch: int) -> tuple[int, float]:
    """Merge ``values`` (id, JSON object bytes carrying every column) in batches;
    returns (rows merged, seconds spent in the merge calls only: decoding,
    done as the drain does it, is not timed)."""
    conn = connect(dsn)
    try:
        schema = load_schema(conn, table)
        merger = Merger(conn, schema, lock_key=(0, 0), still_leased=lambda: True)
        decoder = Decoder(schema)
        merged, seconds = 0, 0.0
        for start in range(0, len(values), batch):
            part = values[start : start + batch]
            decoded = decoder.decode([record_id for record_id, _ in part], [doc for _, doc in part])
            t0 = time.perf_counter()
            result = merger.merge(decoded)
            seconds += time.perf_counter() - t0
            if result.dead:
                raise RuntimeError(f"limit: PostgreSQL rejected rows of {table.name}: {result.dead[:3]}")
            merged += len(result.upserted)
        return merged, seconds
    finally:
        conn.close()
