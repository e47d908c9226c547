"""``repartition_table``: change a table's partition count without losing a
record, while writers run (docs/operations.md, "A partition count change").

A record's partition is ``crc32(id) % partitions``, so a new count moves most
records. Under the leases of every partition of both counts (no drain works
meanwhile) it

1. closes every partition (repartition.lua "close"): its meta carries the new
   entry, so write.lua refuses each writer that still has the old count, and
   no record lands where no drain of the new count looks; a new writer is
   refused by register.lua until step 2;
2. writes the new entry to the registry: writers of the new count start;
3. moves each dirty record whose partition changes, "copy" into the new
   partition (unless a writer of the new count wrote it there since: that
   write is newer) then "drop" from the old one, so a move cut short leaves a
   record in both, never in neither, and running the command again finishes
   it;
4. moves the cached values of landed records the same way (where the new
   partition has none), keeping their TTL;
5. opens every partition to drains again: from step 1 on, snapshot.lua
   starts no run in them, so a move cut short (a fault, a kill) cannot land
   a record's old copy over a newer write of it in its new partition; the
   drain reports the table's error until the command is run again.

Refused, with nothing changed, while a partition has a run (a drain under way
or stopped: drain first) or dead letters (retry and drain, or purge, first):
both live in the partition they were written to. Run again with the same
count it is a check that finishes an interrupted move and changes nothing else.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import asdict, dataclass
from typing import Any

from . import scripts
from .connection import require_sync
from .errors import ConfigurationError
from .keys import DEFAULT_PREFIX, REGISTRY_EPOCH, PartitionKeys, new_epoch, registry_key, validate_prefix
from .table import Table
from .table_keys import Leases, read_states, scan_table, text
from .tables_admin import describe_pending, resolve

PAGE = 200  # ids per SSCAN page and per copy/drop call
MOVED_IN_AT = "moved_in_at"  # meta: when dirty records last moved into the partition (unix seconds)


def partition_of(record_id: str, partitions: int) -> int:
    """keys.partition_of of an id as read back (text(), surrogateescape): an
    id another client wrote that is not UTF-8 goes by its bytes, rather than
    stop the move half done."""
    return 0 if partitions == 1 else zlib.crc32(scripts.id_wire(record_id)) % partitions


@dataclass
class Repartitioned:
    """What ``repartition_table`` did: the count ``before`` (the registry's) and
    ``after``; ``moved``: dirty records moved to their new partition;
    ``cached``: cached values of landed records moved; ``closed``: partitions
    beyond the new count, closed to writers (empty, kept as the mark);
    ``missing``: dirty ids without a value (evicted?), left where they are."""

    table: str
    before: int
    after: int
    moved: int = 0
    cached: int = 0
    closed: list[int] | None = None
    missing: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def repartition_table(redis: Any, table: str, partitions: int, *, prefix: str = DEFAULT_PREFIX) -> Repartitioned:
    """Give ``table`` ``partitions`` partitions, moving its records (module
    docstring). Writers of the old count are refused from the first step on
    (a ConfigurationError telling them to restart with the new count);
    restart them with ``Table(..., partitions=N)``."""
    require_sync(redis, "repartition_table")
    validate_prefix(prefix)
    entry, _, numbers = resolve(redis, prefix, table)
    if entry is None:
        raise ConfigurationError(
            f"the registry entry of {table!r} cannot be read: register it again (Syncwd.register(table, replace=True))"
            " or remove it (`syncwd-fast tables remove`)"
        )
    new = Table(table, key=entry.key_columns, partitions=partitions, ttl=entry.ttl, version_column=entry.version_column)
    union = sorted(numbers | set(range(partitions)))
    parts = {n: PartitionKeys(prefix, table, n) for n in union}
    out = Repartitioned(table, entry.partitions, partitions, closed=[n for n in union if n >= partitions])
    with Leases(redis, list(parts.values()), f"syncwd-fast tables repartition {table}") as leases:
        states = read_states(redis, parts.values())
        stuck = [s for s in states if s.run or s.dead]
        if stuck:
            raise ConfigurationError(
                f"table {table!r} has {describe_pending(stuck)}: nothing was changed. Records in a run or dead-lettered"
                f" stay in their partition: drain it first (`syncwd-fast drain --table {table}`), and retry"
                f" (`dead-letter retry --table {table} --dsn ...`) or purge its dead letters, then run this again"
            )
        registry_entry = new.to_registry()
        closed = f"repartitioned to {partitions} partitions at {int(time.time())}"
        for n, keys in parts.items():
            done = scripts.call(
                redis,
                "repartition",
                [keys.lease, keys.meta],
                ["close", leases.token, registry_entry, closed if n >= partitions else "", partitions],
            )
            if int(done) == -1:
                raise leases.lost(keys)
        redis.hset(registry_key(prefix), table, registry_entry)
        redis.hsetnx(registry_key(prefix), REGISTRY_EPOCH, new_epoch())
        for n in union:
            _move_dirty(redis, parts, n, partitions, leases, out)
        _move_cached(redis, prefix, table, parts, partitions, leases, out)
        for keys in parts.values():  # last: a move cut short keeps drains out until it is run again
            if int(scripts.call(redis, "repartition", [keys.lease, keys.meta], ["open", leases.token])) == -1:
                raise leases.lost(keys)
    return out


def _move_dirty(
    redis: Any, parts: dict[int, PartitionKeys], number: int, partitions: int, leases: Leases, out: Repartitioned
) -> None:
    keys = parts[number]
    cursor = 0
    while True:
        cursor, raw = redis.sscan(keys.dirty, cursor, count=PAGE)
        ids = [text(i) or "" for i in raw]
        going = [i for i in ids if partition_of(i, partitions) != number]
        if going:
            wire = [scripts.id_wire(i) for i in going]
            values = redis.mget([keys.value_prefix.encode() + w for w in wire])  # one slot: a cluster takes it
            marks = redis.hmget(keys.recreated, wire)
            moving = [
                (i, v, "r" if m is not None else "", -1) for i, v, m in zip(going, values, marks) if v is not None
            ]
            out.missing += len(going) - len(moving)
            out.moved += _move(redis, parts, number, partitions, moving, leases)
        if int(cursor) == 0:
            return


def _move_cached(
    redis: Any,
    prefix: str,
    table: str,
    parts: dict[int, PartitionKeys],
    partitions: int,
    leases: Leases,
    out: Repartitioned,
) -> None:
    page: dict[int, list[str]] = {}

    def flush(number: int) -> None:
        keys = parts[number]
        ids = page.pop(number, [])
        wire = [scripts.id_wire(i) for i in ids]
        pipe = redis.pipeline(transaction=False)
        for w in wire:
            pipe.get(keys.value_prefix.encode() + w)
            pipe.pttl(keys.value_prefix.encode() + w)
            pipe.sismember(keys.dirty, w)
        raw = pipe.execute()
        moving = [
            (i, raw[3 * k], "c", int(raw[3 * k + 1]))
            for k, i in enumerate(ids)
            if raw[3 * k] is not None and not raw[3 * k + 2]  # a dirty one moved with the dirty records, or stays
        ]
        out.cached += _move(redis, parts, number, partitions, moving, leases)

    for number, rest in scan_table(redis, prefix, table):
        if number in parts and rest.startswith("v:") and partition_of(rest[2:], partitions) != number:
            page.setdefault(number, []).append(rest[2:])
            if len(page[number]) >= PAGE:
                flush(number)
    for number in list(page):
        flush(number)


def _move(
    redis: Any,
    parts: dict[int, PartitionKeys],
    number: int,
    partitions: int,
    records: list[tuple[str, bytes, str, int]],
    leases: Leases,
) -> int:
    """Copy ``records`` (id, value, flags, pttl) of partition ``number`` into
    their new partitions, then drop them from it. Returns how many were copied."""
    by_target: dict[int, list[tuple[str, bytes, str, int]]] = {}
    for record in records:
        by_target.setdefault(partition_of(record[0], partitions), []).append(record)
    copied = 0
    for target, group in by_target.items():
        keys = parts[target]
        if any("c" not in flags for _, _, flags, _ in group):
            # Records dirty since before this partition's last run: its start bounds
            # them no more (status.py's waiting_since), until a run started after this.
            redis.hset(keys.meta, MOVED_IN_AT, int(time.time()))
        args: list[Any] = ["copy", leases.token, keys.value_prefix]
        for record_id, value, flags, pttl in group:
            args += [scripts.id_wire(record_id), value, flags, pttl]
        n = int(
            scripts.call(redis, "repartition", [keys.lease, keys.dirty, keys.meta, keys.tombs, keys.recreated], args)
        )
        if n == -1:
            raise leases.lost(keys)
        copied += n
    source = parts[number]
    args = ["drop", leases.token, source.value_prefix]
    for record_id, value, _, _ in records:
        args += [scripts.id_wire(record_id), value]
    if (
        records
        and int(scripts.call(redis, "repartition", [source.lease, source.dirty, source.tombs, source.recreated], args))
        == -1
    ):
        raise leases.lost(source)
    return copied
