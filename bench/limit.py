"""The drain's limit: the same final rows, already in memory as the JSON bytes
Redis holds, merged with the drain's own ``Merger`` (binary COPY into the stage
table + ``INSERT ... ON CONFLICT``) on one connection, without Redis.

The values are read from Redis before the clock starts (MGET, untimed): they
are then exactly the bytes the drain will merge, and compact (a list of
``orjson.dumps`` results would pin ~4 kB of memory per value).
"""

from __future__ import annotations

import time
from typing import Any

from syncwd_fast.connection import connect
from syncwd_fast.decode import Decoded
from syncwd_fast.merge import Merger
from syncwd_fast.schema import load_schema
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


def merge_all(dsn: str, table: Table, values: list[tuple[str, bytes]], batch: int) -> tuple[int, float]:
    """Merge ``values`` (id, JSON object bytes carrying every column) in batches;
    returns (rows merged, seconds spent in the merge calls only)."""
    conn = connect(dsn)
    try:
        schema = load_schema(conn, table)
        merger = Merger(conn, schema, lock_key=(0, 0), still_leased=lambda: True)
        columns = [schema.columns]  # every record carries every column: one group
        merged, seconds = 0, 0.0
        for start in range(0, len(values), batch):
            items = [(0, record_id, doc) for record_id, doc in values[start : start + batch]]
            t0 = time.perf_counter()
            result = merger.merge(Decoded(columns=columns, items=items))
            seconds += time.perf_counter() - t0
            if result.dead:
                raise RuntimeError(f"limit: PostgreSQL rejected rows of {table.name}: {result.dead[:3]}")
            merged += len(result.upserted)
        return merged, seconds
    finally:
        conn.close()
