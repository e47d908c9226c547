"""What the operator's commands do, as functions (the CLI calls these):
``status``, and the dead letters' ``dead_letters`` / ``retry_dead_letters`` /
``purge_dead_letters``. Each takes a synchronous Redis client and the prefix
the writers use."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from . import scripts
from .connection import require_sync
from .deadletter import DeadLetter, Retried, find_tables, list_dead, purge_dead, retry_dead_records
from .keys import DEFAULT_PREFIX, TOMBSTONE, canonical_id, validate_prefix
from .status import pipeline_reply, status_report


def status(
    redis: Any,
    *,
    prefix: str = DEFAULT_PREFIX,
    tables: Iterable[str] | None = None,
    discover: bool = False,
    partitions: bool = False,
) -> dict[str, Any]:
    """What ``syncwd-fast status --json`` prints: ``{"tables": {name: {...}},
    "warnings": [...]}``; with ``partitions``, each table's ``per_partition``
    rows too (``--partitions``). docs/operations.md documents every field."""
    require_sync(redis, "status")
    return status_report(redis, validate_prefix(prefix), tables, discover, partitions)


def dead_letters(
    redis: Any, *, prefix: str = DEFAULT_PREFIX, tables: Iterable[str] | None = None
) -> Iterator[DeadLetter]:
    """Every dead letter of ``tables`` (default every table), as ``dead-letter list`` shows them."""
    require_sync(redis, "dead_letters")
    return list_dead(redis, validate_prefix(prefix), tables)


def retry_dead_letters(
    redis: Any, *, prefix: str = DEFAULT_PREFIX, tables: Iterable[str] | None = None, ids: Iterable[str] | None = None
) -> Retried:
    """Mark dead letters dirty again, for the next drain (``dead-letter retry``):
    how many per table, and the ``ids`` that were no dead letters."""
    require_sync(redis, "retry_dead_letters")
    return retry_dead_records(redis, validate_prefix(prefix), tables, ids)


def purge_dead_letters(
    redis: Any,
    *,
    prefix: str = DEFAULT_PREFIX,
    tables: Iterable[str] | None = None,
    ids: Iterable[str] | None = None,
    older_than: float | None = None,
) -> int:
    """Forget dead letters (``dead-letter purge``), or only those dead-lettered
    at least ``older_than`` seconds ago; their values get the cache TTL unless
    a newer value waits to be drained. Returns how many."""
    require_sync(redis, "purge_dead_letters")
    if older_than is not None and not older_than >= 0:
        raise ValueError(f"older_than must be seconds >= 0, got {older_than!r}")
    at_most = None if older_than is None else time.time() - older_than
    return purge_dead(redis, validate_prefix(prefix), tables, ids, at_most)


def record(redis: Any, table: str, record_id: Any, *, prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """One record's state in Redis (``syncwd-fast get``): its value (the JSON,
    or {"deleted": true} for a tombstone, None when gone) and its cache TTL in
    ms (None: no TTL, as while it is not durable), whether it waits to be
    drained (``dirty``), is in the active run's set (``in_run``), in an
    in-flight record (``in_flight``: popped, not yet committed and acked), and
    its dead letter if it has one. ``record_id``: the id's text, or the key's
    value (a tuple or list for several key columns), as ``Syncwd.get`` takes it."""
    require_sync(redis, "record")
    (t,) = find_tables(redis, validate_prefix(prefix), [table])
    rid = (
        record_id
        if isinstance(record_id, str)
        else canonical_id(record_id if isinstance(record_id, (list, tuple)) else [record_id])
    )
    wire = scripts.id_wire(rid)
    number = t.partition(rid)
    keys = t.keys(number, prefix)
    pipe = redis.pipeline(transaction=False)
    pipe.get(keys.value(rid))
    pipe.pttl(keys.value(rid))
    pipe.sismember(keys.dirty, wire)
    pipe.hget(keys.meta, "run")
    pipe.hget(keys.dead, wire)
    raw, ttl, dirty, run, dead = pipe.execute()
    run = run.decode() if isinstance(run, bytes) else run
    in_run = in_flight = False
    if run:
        pipe = redis.pipeline(transaction=False)
        pipe.sismember(keys.run(run), wire)
        scripts.read_in_flight(pipe, keys, run)
        pipe.sismember(keys.inflight(run), wire)  # a run of an earlier version kept in-flight ids in a set
        member, records, redo, in_set = (pipeline_reply(v) for v in pipe.execute(raise_on_error=False))
        in_run = bool(member)
        in_flight = bool(in_set) or any(wire in scripts.packed_ids(r) for r in [*(records or []), *redo])
    value: Any = None
    if raw is not None:
        raw = raw.encode() if isinstance(raw, str) else raw
        if raw[:1] == TOMBSTONE:
            value = {"deleted": True}
        else:
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                value = raw.decode("utf-8", "replace")
    return {
        "table": t.name,
        "partition": number,
        "id": rid,
        "value": value,
        "ttl_ms": ttl if ttl is not None and ttl >= 0 else None,
        "dirty": bool(dirty),
        "in_run": in_run,
        "in_flight": in_flight,
        "dead_letter": orjson.loads(dead) if dead else None,
    }
