"""What waits in Redis, per table: dirty, in a run, in flight, dead.

Tables the registry lost (see discover.py) are shown too, with
``"registered": False``, when the registry is empty, lacks a table asked for,
or with ``discover=True``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import holder, scripts
from .checks import eviction_warnings, nothing_registered_warning
from .discover import find_unregistered, registry_epoch
from .drain import registered_tables
from .errors import ConfigurationError

W = 7  # replies per partition in the first pipeline


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def table_status(
    redis_client: Any,
    prefix: str,
    tables: Iterable[str] | None = None,
    discover: bool = False,
    invalid: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per table, what waits in Redis. ``invalid``: registry entries that
    cannot be read are said there and skipped, instead of raising."""
    registry = registered_tables(redis_client, prefix, invalid)
    wanted = list(tables or [])
    # A registry created again since the last look may lack tables: look too.
    stale = registry_epoch(redis_client, prefix).changed
    lost = find_unregistered(redis_client, prefix, registry, wanted, discover or stale)
    known = dict(sorted({**registry, **lost}.items()))
    names = wanted or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigurationError(
            f"not registered under prefix {prefix!r} and in no partition meta: {', '.join(unknown)}"
        )
    result: dict[str, dict[str, Any]] = {}
    for name in names:
        table = known[name]
        parts = [table.keys(n, prefix) for n in range(table.partitions)]
        pipe = redis_client.pipeline(transaction=False)
        for keys in parts:
            pipe.scard(keys.dirty)
            pipe.hget(keys.meta, "run")
            pipe.hlen(keys.dead)
            pipe.get(keys.lease)
            pipe.hget(keys.meta, "holder")
            pipe.hget(keys.meta, "holder_id")
            pipe.hget(keys.meta, "last_finished_at")
        raw = pipe.execute()
        runs = [(keys, raw[W * i + 1]) for i, keys in enumerate(parts)]
        leases = {
            keys.number: _text(raw[W * i + 4]) if raw[W * i + 4] else "a drainer"
            for i, keys in enumerate(parts)
            if raw[W * i + 3]
        }
        finished = [int(raw[W * i + 6]) for i in range(len(parts)) if raw[W * i + 6]]
        # Holders that died on this machine (holder.py): their leases run out, or the next drain takes them at once.
        dead_holders = [
            keys.number
            for i, keys in enumerate(parts)
            if raw[W * i + 3] and holder.is_dead(raw[W * i + 5], raw[W * i + 3])
        ]
        pipe = redis_client.pipeline(transaction=False)
        active = [(keys, run.decode() if isinstance(run, bytes) else run) for keys, run in runs if run]
        for keys, run in active:
            # In flight: the ids of the in-flight records and of those waiting to be popped again.
            pipe.scard(keys.run(run))
            pipe.hmget(keys.meta, "cursor", "scan", "taken")
            scripts.read_in_flight(pipe, keys, run)
        raw_runs = pipe.execute() if active else []
        in_run = inflight = 0
        for i in range(len(active)):
            size, (cursor, scan, taken), records, redo = raw_runs[4 * i : 4 * i + 4]
            in_run += _unread(size, _text(cursor) if cursor else None, _text(scan) if scan else None, taken)
            inflight += sum(scripts.packed_count(r) for r in records + redo)
        result[name] = {
            "partitions": table.partitions,
            "key": list(table.key_columns),
            "dirty": sum(raw[W * i] for i in range(len(parts))),
            "in_run": in_run,
            "inflight": inflight,
            "dead": sum(raw[W * i + 2] for i in range(len(parts))),
            "active_runs": {keys.number: run for keys, run in active},
            "leases": leases,  # partition -> who holds its lease now (host, pid, since)
            "dead_holders": dead_holders,  # partitions whose lease holder is known to have died
            # When a drain last finished a partition (unix seconds): the latest, and the oldest of the
            # partitions' last (None while a partition was never drained): every record written
            # before that one was drained, so nothing waiting is older unless written since.
            "last_drained_at": max(finished, default=None),
            "all_drained_at": min(finished) if len(finished) == len(parts) else None,
            "registered": name in registry,  # False: found only in partition meta; drain --discover registers it
        }
    return result


def _unread(size: int, cursor: str | None, scan: str | None, taken: Any) -> int:
    """Ids of a run set not read yet: the set keeps every id while a pass reads
    it (pop.lua), so its size less the ids read in this pass; a set of an
    earlier version lost its ids as they were read."""
    if scan != "whole":
        return size
    if cursor == "done":
        return 0
    return max(1, size - int(taken or 0))


def status_report(
    redis_client: Any, prefix: str, tables: Iterable[str] | None = None, discover: bool = False
) -> dict[str, Any]:
    """``{"tables": table_status(...), "warnings": [...]}``: what `status`
    prints, with what an operator should know (eviction policy, nothing
    registered)."""
    invalid: list[str] = []
    result = table_status(redis_client, prefix, tables, discover, invalid)
    warnings = invalid + eviction_warnings(redis_client)
    if not result:
        warnings.append(nothing_registered_warning(redis_client, prefix))
    return {"tables": result, "warnings": warnings}
