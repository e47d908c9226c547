"""What waits in Redis, per table and per partition: dirty, in a run, in
flight, dead, the active runs, the leases and the last runs.

Two pipelines in all, however many tables and partitions: one reads every
partition, one every active run (redis-py's cluster pipeline sends each node
its commands in one write). Tables the registry lost (see discover.py) are
shown too, with ``"registered": False``, when the registry is empty, lacks a
table asked for, or with ``discover=True``. docs/operations.md documents
every field."""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.exceptions

from . import holder, scripts
from .checks import nothing_registered_warning, redis_warnings
from .discover import find_unregistered, registry_epoch
from .drain import registered_tables
from .errors import ConfigurationError
from .keys import PartitionKeys
from .table import Table

# Read from each partition's meta in the first pipeline (partition.py writes the last_* fields).
META = (
    "run",
    "holder",
    "holder_id",
    "started_at",
    "last_run",
    "last_started_at",
    "last_finished_at",
    "last_seconds",
    "last_upserted",
    "last_deleted",
    "last_dead_lettered",
    "last_skipped",
    "moved_in_at",
    "scan",
)
W = 5  # replies per partition in the first pipeline: SCARD dirty, HLEN dead, GET lease, PTTL lease, HMGET meta
COUNTS = ("upserted", "deleted", "dead_lettered", "skipped")


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _number(value: bytes | str | None) -> float | None:
    try:
        return float(value) if value not in (None, b"", "") else None
    except ValueError:
        return None


def _int(value: bytes | str | None) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


@dataclass
class _Partition:
    table: str
    keys: PartitionKeys
    dirty: int
    dead: int
    lease: bytes | None
    lease_ms: int
    meta: dict[str, bytes | None]
    in_run: int = 0
    inflight: int = 0

    @property
    def run(self) -> str | None:
        return _text(self.meta["run"])


def _since(iso: Any) -> int | None:
    """holder.py's ``since`` (UTC, ISO 8601) as unix seconds."""
    try:
        return calendar.timegm(time.strptime(str(iso), "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return None


def _lease(p: _Partition) -> dict[str, Any] | None:
    if not p.lease:
        return None
    ident: dict[str, Any] = {}
    try:
        loaded = orjson.loads(p.meta["holder_id"] or b"null")
        # An id written for another lease than this one speaks for an earlier holder.
        if isinstance(loaded, dict) and loaded.get("token") == _text(p.lease):
            ident = loaded
    except orjson.JSONDecodeError:
        pass
    dead = holder.is_dead(p.meta["holder_id"], p.lease)
    return {
        "holder": _text(p.meta["holder"]) or "a drainer",
        "host": ident.get("host"),
        "pid": ident.get("pid"),
        "since": _since(ident["since"]) if "since" in ident else None,
        "alive": None if dead is None else not dead,
        "expires_in": round(p.lease_ms / 1000, 3) if p.lease_ms >= 0 else None,
    }


def _last_run(p: _Partition, now: float) -> dict[str, Any] | None:
    finished = _int(p.meta["last_finished_at"])
    if finished is None:
        return None
    counts = {name: _int(p.meta[f"last_{name}"]) or 0 for name in COUNTS}
    seconds = _number(p.meta["last_seconds"])
    return {
        "id": _text(p.meta["last_run"]),
        "started_at": _int(p.meta["last_started_at"]),
        "finished_at": finished,
        "seconds": seconds,
        **counts,
        "rows_per_second": _rate(counts, seconds),
        "ago": max(0, int(now - finished)),
    }


def _rate(counts: dict[str, int], seconds: float | None) -> float | None:
    """Rows merged (upserted and deleted) a second, as the drain report counts them."""
    if not seconds or seconds <= 0:
        return None
    return round((counts["upserted"] + counts["deleted"]) / seconds, 1)


def _waiting_since(p: _Partition, last: dict[str, Any] | None) -> int | None:
    """No record waiting in ``p`` became dirty before this: the last finished
    run's snapshot took every record dirty then. None when nothing waits or
    it cannot be known (never drained, a run left unfinished)."""
    if not (p.dirty or p.in_run or p.inflight) or last is None:
        return None
    if p.run is not None and p.run == last["id"]:  # the last run stopped early and is still active
        return None
    started: int | None = last["started_at"]
    moved = _int(p.meta["moved_in_at"])
    if started is not None and moved is not None and started <= moved:
        return None  # records moved in by a repartition may be older than the last run (repartition.py)
    return started


def _partition_row(p: _Partition, now: float) -> dict[str, Any]:
    last = _last_run(p, now)
    run = p.run
    return {
        "partition": p.keys.number,
        "dirty": p.dirty,
        "in_run": p.in_run,
        "inflight": p.inflight,
        "dead": p.dead,
        "waiting_since": _waiting_since(p, last),
        "active_run": (
            {"id": run, "started_at": _int(p.meta["started_at"]), "left": p.in_run + p.inflight}
            if run is not None
            else None
        ),
        "lease": _lease(p),
        "last_run": last,
    }


def _table_last_run(rows: list[dict[str, Any]], now: float) -> dict[str, Any] | None:
    """The partitions' last runs taken together."""
    lasts = [r["last_run"] for r in rows if r["last_run"] is not None]
    if not lasts:
        return None
    counts = {name: sum(last[name] for last in lasts) for name in COUNTS}
    timed = [last["seconds"] for last in lasts if last["seconds"] is not None]
    seconds = round(sum(timed), 3) if len(timed) == len(lasts) else None
    finished = max(last["finished_at"] for last in lasts)
    return {
        "partitions": len(lasts),
        "finished_at": finished,
        "seconds": seconds,
        **counts,
        "rows_per_second": _rate(counts, seconds),
        "ago": max(0, int(now - finished)),
    }


def _active(rows: list[dict[str, Any]]) -> dict[str, Any]:
    runs = [r["active_run"] for r in rows if r["active_run"] is not None]
    starts = [run["started_at"] for run in runs if run["started_at"] is not None]
    leases = [r["lease"] for r in rows if r["lease"] is not None]
    return {
        "runs": len(runs),
        "left": sum(run["left"] for run in runs),
        "oldest_started_at": min(starts) if len(starts) == len(runs) and starts else None,
        "leases": len(leases),
        "dead_holders": sum(1 for lease in leases if lease["alive"] is False),
    }


def _read(redis_client: Any, parts: list[tuple[str, PartitionKeys]]) -> list[_Partition]:
    """Phase one: every partition of every table, one pipeline."""
    pipe = redis_client.pipeline(transaction=False)
    for _, keys in parts:
        pipe.scard(keys.dirty)
        pipe.hlen(keys.dead)
        pipe.get(keys.lease)
        pipe.pttl(keys.lease)
        pipe.hmget(keys.meta, *META)
    raw = pipe.execute() if parts else []
    return [
        _Partition(
            table=name,
            keys=keys,
            dirty=raw[W * i],
            dead=raw[W * i + 1],
            lease=raw[W * i + 2].encode() if isinstance(raw[W * i + 2], str) else raw[W * i + 2],
            lease_ms=raw[W * i + 3],
            meta=dict(zip(META, raw[W * i + 4])),
        )
        for i, (name, keys) in enumerate(parts)
    ]


def _read_runs(redis_client: Any, partitions: list[_Partition]) -> None:
    """Phase two: every active run, one pipeline; fills in_run and inflight."""
    active = [p for p in partitions if p.run is not None]
    # A run of an earlier version (no meta "scan") kept its in-flight ids in a
    # set (snapshot.lua): HVALS of it fails with WRONGTYPE, SCARD counts it.
    older = {id(p) for p in active if _text(p.meta["scan"]) != "whole"}
    pipe = redis_client.pipeline(transaction=False)
    for p in active:
        run = p.run
        assert run is not None
        # In flight: the ids of the in-flight records and of those waiting to be popped again.
        pipe.scard(p.keys.run(run))
        pipe.hmget(p.keys.meta, "cursor", "scan", "taken")
        scripts.read_in_flight(pipe, p.keys, run)
        if id(p) in older:
            pipe.scard(p.keys.inflight(run))
    raw = iter(pipe.execute(raise_on_error=False) if active else [])
    for p in active:
        size, (cursor, scan, taken), records, redo = (pipeline_reply(next(raw)) for _ in range(4))
        p.in_run = _unread(size, _text(cursor), _text(scan), taken)
        p.inflight = sum(scripts.packed_count(r) for r in (records or []) + redo)
        if id(p) in older:
            in_set = pipeline_reply(next(raw))
            p.inflight += in_set if records is None and in_set else 0


def read_partitions(redis_client: Any, parts: list[tuple[str, PartitionKeys]]) -> list[_Partition]:
    """What each (table, partition keys) holds now: backlog, lease, meta and
    its active run's records left and in flight, in two pipelines however many."""
    read = _read(redis_client, parts)
    _read_runs(redis_client, read)
    return read


def pipeline_reply(value: Any) -> Any:
    """A pipeline's reply; None for a key of another type than the command reads."""
    if isinstance(value, redis.exceptions.ResponseError):
        if "WRONGTYPE" in str(value):
            return None
        raise value
    return value


def table_status(
    redis_client: Any,
    prefix: str,
    tables: Iterable[str] | None = None,
    discover: bool = False,
    invalid: list[str] | None = None,
    partitions: bool = False,
) -> dict[str, dict[str, Any]]:
    """Per table, what waits in Redis; with ``partitions``, each table's
    ``per_partition`` rows too. ``invalid``: registry entries that cannot be
    read are said there and skipped, instead of raising."""
    registry = registered_tables(redis_client, prefix, invalid)
    wanted = list(tables or [])
    # A registry created again since the last look may lack tables: look too.
    stale = registry_epoch(redis_client, prefix).changed
    lost = find_unregistered(redis_client, prefix, registry, wanted, discover or stale)
    known: dict[str, Table] = dict(sorted({**registry, **lost}.items()))
    names = wanted or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigurationError(
            f"not registered under prefix {prefix!r} and in no partition meta: {', '.join(unknown)}"
        )
    wanted_parts = [(n, known[n].keys(i, prefix)) for n in names for i in range(known[n].partitions)]
    read = read_partitions(redis_client, wanted_parts)
    now = time.time()
    result: dict[str, dict[str, Any]] = {}
    for name in names:
        table = known[name]
        parts = [p for p in read if p.table == name]
        rows = [_partition_row(p, now) for p in parts]
        finished = [r["last_run"]["finished_at"] for r in rows if r["last_run"] is not None]
        waiting = [r for r in rows if r["dirty"] or r["in_run"] or r["inflight"]]
        since = [r["waiting_since"] for r in waiting]
        result[name] = {
            "partitions": table.partitions,
            "key": list(table.key_columns),
            "dirty": sum(p.dirty for p in parts),
            "in_run": sum(p.in_run for p in parts),
            "inflight": sum(p.inflight for p in parts),
            "dead": sum(p.dead for p in parts),
            "active_runs": {p.keys.number: p.run for p in parts if p.run is not None},
            "leases": {r["partition"]: r["lease"]["holder"] for r in rows if r["lease"] is not None},
            # Holders that died on this machine (holder.py): their leases run out, or the next drain takes them at once.
            "dead_holders": [r["partition"] for r in rows if r["lease"] is not None and r["lease"]["alive"] is False],
            # When a drain last finished a partition (unix seconds): the latest, and the oldest of the
            # partitions' last (None while a partition was never drained). Records written while those
            # runs ran may still wait: waiting_since, not these, bounds their age.
            "last_drained_at": max(finished, default=None),
            "all_drained_at": min(finished) if len(finished) == len(parts) else None,
            "registered": name in registry,  # False: found only in partition meta; drain --discover registers it
            "waiting_since": min(since) if waiting and None not in since else None,
            "active": _active(rows),
            "last_run": _table_last_run(rows, now),
        }
        if partitions:
            result[name]["per_partition"] = rows
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
    redis_client: Any,
    prefix: str,
    tables: Iterable[str] | None = None,
    discover: bool = False,
    partitions: bool = False,
) -> dict[str, Any]:
    """``{"tables": table_status(...), "warnings": [...]}``: what `status`
    prints, with what an operator should know (Redis settings that lose or
    refuse writes, nothing registered)."""
    invalid: list[str] = []
    result = table_status(redis_client, prefix, tables, discover, invalid, partitions)
    warnings = invalid + redis_warnings(redis_client)
    if not result:
        warnings.append(nothing_registered_warning(redis_client, prefix))
    return {"tables": result, "warnings": warnings}
