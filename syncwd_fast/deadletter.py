"""Dead letters: list them, put them back for another drain, or purge them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from . import scripts
from .discover import find_unregistered, registry_epoch
from .drain import registered_tables
from .errors import ConfigurationError
from .table import Table


@dataclass(frozen=True)
class DeadLetter:
    table: str
    partition: int
    id: str
    error: str
    value: str | None
    at: float
    attempts: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_tables(redis_client: Any, prefix: str, tables: Iterable[str] | None) -> list[Table]:
    """The tables asked for, or every one; with an empty registry, or a table
    asked for that it lacks, also those only their partitions' meta knows."""
    registry = registered_tables(redis_client, prefix)
    wanted = list(tables or [])
    stale = registry_epoch(redis_client, prefix).changed
    lost = find_unregistered(redis_client, prefix, registry, wanted, stale)
    known = dict(sorted({**registry, **lost}.items()))
    names = wanted or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigurationError(
            f"not registered under prefix {prefix!r} and in no partition meta: {', '.join(unknown)}"
        )
    return [known[n] for n in names]


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def list_dead(redis_client: Any, prefix: str, tables: Iterable[str] | None = None) -> Iterator[DeadLetter]:
    for table in find_tables(redis_client, prefix, tables):
        for number in range(table.partitions):
            keys = table.keys(number, prefix)
            for record_id, raw in redis_client.hscan_iter(keys.dead, count=1000):
                try:
                    entry = orjson.loads(raw)
                except orjson.JSONDecodeError:  # a value that was not UTF-8
                    entry = orjson.loads(_text(raw))
                yield DeadLetter(
                    table.name,
                    number,
                    _text(record_id),
                    entry.get("error", ""),
                    entry.get("value"),
                    float(entry.get("at", 0)),
                    int(entry.get("attempts", 1)),
                )


def _per_partition(
    redis_client: Any, prefix: str, tables: Iterable[str] | None, ids: Iterable[str] | None
) -> Iterator[tuple[Table, Any, list[str]]]:
    wanted = list(ids or [])
    for table in find_tables(redis_client, prefix, tables):
        if not wanted:
            for number in range(table.partitions):
                yield table, table.keys(number, prefix), []
            continue
        by_partition: dict[int, list[str]] = {}
        for record_id in wanted:
            by_partition.setdefault(table.partition(record_id), []).append(record_id)
        for number, part_ids in by_partition.items():
            yield table, table.keys(number, prefix), part_ids


@dataclass
class Retried:
    """What ``retry_dead_records`` marked dirty again: how many per table, and
    the ids asked for that no table asked for holds as a dead letter."""

    tables: dict[str, int]
    not_found: list[str]

    @property
    def count(self) -> int:
        return sum(self.tables.values())


def retry_dead_records(
    redis_client: Any, prefix: str, tables: Iterable[str] | None = None, ids: Iterable[str] | None = None
) -> Retried:
    """Mark dead-lettered records dirty again (all, or ``ids``, of ``tables``
    or every table); their entries stay until they land."""
    wanted = list(dict.fromkeys(ids or []))
    out = Retried({}, [])
    found: set[str] = set()
    for table, keys, part_ids in _per_partition(redis_client, prefix, tables, wanted):
        n = int(scripts.call(redis_client, "retry", [keys.dead, keys.dirty], part_ids))
        if n:
            out.tables[table.name] = out.tables.get(table.name, 0) + n
        if part_ids and n:
            # Entries stay until their record lands: those there now were marked.
            present = redis_client.hmget(keys.dead, [scripts.id_wire(i) for i in part_ids])
            found.update(rid for rid, entry in zip(part_ids, present) if entry is not None)
    out.not_found = [rid for rid in wanted if rid not in found]
    return out


def retry_dead(
    redis_client: Any, prefix: str, tables: Iterable[str] | None = None, ids: Iterable[str] | None = None
) -> int:
    """Mark dead-lettered records dirty again; returns how many."""
    return retry_dead_records(redis_client, prefix, tables, ids).count


def purge_dead(
    redis_client: Any,
    prefix: str,
    tables: Iterable[str] | None = None,
    ids: Iterable[str] | None = None,
    at_most: float | None = None,
) -> int:
    """Forget dead letters (those made at or before ``at_most``, unix seconds,
    when given); their values get the cache TTL, unless a newer value is still
    to be drained (dirty, in the active run or in flight). Returns how many."""
    return sum(
        purge_partition(redis_client, table, keys, part_ids, at_most)
        for table, keys, part_ids in _per_partition(redis_client, prefix, tables, ids)
    )


def purge_partition(
    redis_client: Any, table: Table, keys: Any, ids: Sequence[str | bytes], at_most: float | None = None
) -> int:
    """purge.lua on one partition: ``ids`` (none: every entry) made at or
    before ``at_most`` (None: at any time)."""
    args = [keys.value_prefix, table.ttl, keys.run_prefix, "" if at_most is None else repr(float(at_most))]
    return int(
        scripts.call(
            redis_client,
            "purge",
            [keys.dead, keys.dirty, keys.meta, keys.tombs, keys.recreated],
            [*args, *(scripts.id_wire(i) if isinstance(i, str) else i for i in ids)],
        )
    )
