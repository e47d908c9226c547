"""The write side: ``Syncwd.update_many`` against a hand-pipelined SET + SADD
(its limit) and one unpipelined SET + SADD per record (the naive way).

Fairness: the limit and the naive writer get JSON bytes serialized before the
clock starts; ``update_many`` gets dicts and serializes them on the clock, as an
application would call it. Only the Redis calls (and, for update_many, its own
work) are timed; generating the rows is not.
"""

from __future__ import annotations

import time
from typing import Any

from syncwd_fast.keys import PartitionKeys, partition_of
from syncwd_fast.table import Table
from syncwd_fast.writer import Syncwd

from . import data


def update_many(client: Any, table: Table, prefix: str, width: str, records: int, updates: int, chunk: int) -> float:
    """Write every record ``updates`` times with update_many; returns the timed seconds."""
    writer = Syncwd(client, prefix=prefix)
    writer.register(table)  # once per table, not part of the steady write rate
    seconds = 0.0
    for rows in data.write_passes(width, records, updates, chunk):
        t0 = time.perf_counter()
        writer.update_many(table, rows)
        seconds += time.perf_counter() - t0
    return seconds


def _partition_keys(table: Table, prefix: str) -> list[PartitionKeys]:
    return [PartitionKeys(prefix, table.name, n) for n in range(table.partitions)]


def pipelined(client: Any, table: Table, prefix: str, width: str, records: int, updates: int, chunk: int) -> float:
    """The limit: the same writes as SET value + SADD dirty id, pipelined
    (no MULTI) one chunk per round trip, into the same key layout."""
    keys = _partition_keys(table, prefix)
    partitions = table.partitions
    seconds = 0.0
    for rows in data.write_passes(width, records, updates, chunk):
        items = data.serialized(rows)
        t0 = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for record_id, value in items:
            k = keys[partition_of(record_id, partitions)]
            pipe.set(k.value_prefix + record_id, value)
            pipe.sadd(k.dirty, record_id)
        pipe.execute()
        seconds += time.perf_counter() - t0
    return seconds


def bulk(
    client: Any, table: Table, prefix: str, width: str, records: int, updates: int, chunk: int, per_call: int = 1000
) -> float:
    """An extra, stronger limit: what the write script does, without Lua:
    MSET + SADD of ``per_call`` records per command, pipelined per chunk."""
    keys = _partition_keys(table, prefix)
    partitions = table.partitions
    seconds = 0.0
    for rows in data.write_passes(width, records, updates, chunk):
        items = data.serialized(rows)
        t0 = time.perf_counter()
        by_partition: dict[int, list[tuple[str, bytes]]] = {}
        for item in items:
            by_partition.setdefault(partition_of(item[0], partitions), []).append(item)
        pipe = client.pipeline(transaction=False)
        for number, group in by_partition.items():
            k = keys[number]
            for start in range(0, len(group), per_call):
                part = group[start : start + per_call]
                pipe.mset({k.value_prefix + record_id: value for record_id, value in part})
                pipe.sadd(k.dirty, *[record_id for record_id, _ in part])
        pipe.execute()
        seconds += time.perf_counter() - t0
    return seconds


def one_by_one(client: Any, table: Table, prefix: str, width: str, sample: int) -> float:
    """The naive writer: one SET and one SADD round trip per record, for ``sample`` records."""
    keys = _partition_keys(table, prefix)
    items = data.serialized(data.rows(width, 0, sample, 0))
    t0 = time.perf_counter()
    for record_id, value in items:
        k = keys[partition_of(record_id, table.partitions)]
        client.set(k.value_prefix + record_id, value)
        client.sadd(k.dirty, record_id)
    return time.perf_counter() - t0
