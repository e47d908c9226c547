"""The Lua scripts of ``lua/``: loaded once, called by SHA, typed wrappers.

Scripts ship as package files (``syncwd_fast.lua``) and are called with
EVALSHA; on NOSCRIPT (a restarted or failed-over Redis) the source is sent
once with EVAL, which caches it on that node again.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from redis.exceptions import NoScriptError

from .errors import LeaseLost
from .keys import PartitionKeys

LEASE_LOST = -1


@dataclass(frozen=True)
class Script:
    name: str
    source: str
    sha: str


@cache
def script(name: str) -> Script:
    source = files("syncwd_fast.lua").joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


def call(client: Any, name: str, keys: list[str], args: list[Any]) -> Any:
    s = script(name)
    try:
        return client.evalsha(s.sha, len(keys), *keys, *args)
    except NoScriptError:
        return client.eval(s.source, len(keys), *keys, *args)


def _fenced(result: Any, keys: PartitionKeys, what: str) -> Any:
    if result == LEASE_LOST:
        raise LeaseLost(f"{what}: lease on {keys.base} is held by another drainer or expired")
    return result


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_text(value: bytes | str) -> str:
    """An id as popped: bytes that are not UTF-8 (another client may write
    any) keep their bytes as surrogates, so the id can be dead-lettered."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def id_wire(record_id: str) -> bytes:
    return record_id.encode("utf-8", "surrogateescape")


# --- write side ---------------------------------------------------------------


def write_args(keys: PartitionKeys, entry: bytes, items: list[tuple[str, bytes]]) -> tuple[list[str], list[Any]]:
    """``entry`` is the table's registry entry, kept in the partition's meta."""
    args: list[Any] = [entry, len(items)]
    prefix = keys.value_prefix
    for record_id, value in items:
        args.append(prefix + record_id)
        args.append(value)
    args.extend(record_id for record_id, _ in items)
    return [keys.dirty, keys.meta, keys.tombs, keys.recreated], args


# --- drain side ---------------------------------------------------------------


def lease(client: Any, keys: PartitionKeys, op: str, token: str, ms: int = 0, holder: str | None = None) -> bool:
    if op == "renew":
        return bool(call(client, "lease", [keys.lease], [op, token, ms]))
    args = [op, token, ms] if holder is None else [op, token, ms, holder]
    return bool(call(client, "lease", [keys.lease, keys.meta], args))


@dataclass(frozen=True)
class Snapshot:
    run: str
    size: int
    adopted: bool


def snapshot(client: Any, keys: PartitionKeys, token: str, new_run: str) -> Snapshot:
    result = _fenced(
        call(
            client, "snapshot", [keys.dirty, keys.meta, keys.lease], [token, new_run, keys.run_prefix, int(time.time())]
        ),
        keys,
        "snapshot",
    )
    return Snapshot(_text(result[0]), int(result[1]), bool(result[2]))


def redo_key(keys: PartitionKeys, run: str) -> str:
    """The run's redo list: in-flight records of a drainer that stopped, popped again first."""
    return keys.run(run) + ":redo"


def packed_count(record: bytes) -> int:
    """How many ids an in-flight record holds: the length of its cmsgpack array."""
    head = record[0]
    if head & 0xF0 == 0x90:  # fixarray
        return head & 0x0F
    if head == 0xDC:  # array 16
        return int.from_bytes(record[1:3], "big")
    if head == 0xDD:  # array 32
        return int.from_bytes(record[1:5], "big")
    raise ValueError(f"not an in-flight record: {record[:8]!r}")


@dataclass(frozen=True)
class Popped:
    ids: list[str]
    values: list[bytes | None]
    remaining: int  # 1 while the run set or its redo list holds ids not popped yet, else 0
    # id -> generation, for records that are a new row after a delete (write.lua)
    recreated: dict[str, str] = field(default_factory=dict)
    # (pop number, ids of that pop): the in-flight records the ids are held by
    pops: list[tuple[int, list[str]]] = field(default_factory=list)


def pop(client: Any, keys: PartitionKeys, run: str, token: str, count: int, lease_ms: int) -> Popped:
    """About ``count`` ids of the run (SSCAN's COUNT is a hint) as one in-flight
    record, then their values with a plain MGET."""
    result = _fenced(
        call(
            client,
            "pop",
            [keys.run(run), keys.inflight(run), redo_key(keys, run), keys.meta, keys.lease, keys.recreated],
            [count, token, lease_ms, run],
        ),
        keys,
        "pop",
    )
    raw: list[bytes] = [i if isinstance(i, bytes) else id_wire(i) for i in result[0]]
    if not raw:
        return Popped([], [], int(result[1]))
    prefix = keys.value_prefix.encode()
    # Lua false comes back as None (a missing value); a str value means a decode_responses client.
    values: list[bytes | None] = [
        v.encode() if isinstance(v, str) else v for v in client.mget([prefix + i for i in raw])
    ]
    ids = [_id_text(i) for i in raw]
    recreated = {rid: _text(gen) for rid, gen in zip(ids, result[2]) if gen is not None}
    return Popped(ids, values, int(result[1]), recreated, [(int(result[3]), ids)])


def ack(
    client: Any,
    keys: PartitionKeys,
    run: str,
    token: str,
    ttl: int,
    pops: list[int],
    kept: list[str] | None = None,
    deleted: list[str] | None = None,
    recreated: dict[str, str] | None = None,
) -> tuple[int, int]:
    """Drop the in-flight records ``pops``: every id they hold was merged and its
    value gets the TTL, except ``kept`` (acked without a TTL: the version guard
    skipped them) and ``deleted`` (tombstones, removed); ``recreated``: id ->
    generation of merged new rows after a delete. No pops: only whether the run
    is over. Returns (more, in-flight records left): more is 1 while the run set
    or its redo list holds ids not popped yet."""
    kept = kept or []
    deleted = deleted or []
    pairs = [x for item in (recreated or {}).items() for x in item]
    result = _fenced(
        call(
            client,
            "ack",
            [
                keys.inflight(run),
                keys.run(run),
                redo_key(keys, run),
                keys.dirty,
                keys.meta,
                keys.lease,
                keys.dead,
                keys.tombs,
                keys.recreated,
            ],
            [token, keys.value_prefix, ttl, run, len(pops), len(kept), len(deleted), *pops, *kept, *deleted, *pairs],
        ),
        keys,
        "ack",
    )
    return int(result[0]), int(result[1])


def landing(client: Any, keys: PartitionKeys, token: str, xid: int, marks: dict[str, str]) -> int:
    """Note the transaction ``xid`` on the recreated marks it replaces (id -> generation)."""
    args: list[Any] = [token, xid]
    for record_id, generation in marks.items():
        args.append(id_wire(record_id))
        args.append(generation)
    return int(_fenced(call(client, "landing", [keys.recreated, keys.lease], args), keys, "landing"))


def dead(
    client: Any,
    keys: PartitionKeys,
    run: str,
    token: str,
    entries: list[tuple[str, str]],
    at: float | None = None,
    pops: list[int] | None = None,
) -> int:
    """``at``: the time recorded in each entry (default now); ``pops``: the pop
    numbers of the in-flight records that hold the ids (they are taken out)."""
    pops = pops or []
    args: list[Any] = [token, keys.value_prefix, round(time.time(), 3) if at is None else at, len(pops), *pops]
    for record_id, reason in entries:
        args.append(id_wire(record_id))
        args.append(reason)
    return int(_fenced(call(client, "dead", [keys.inflight(run), keys.dead, keys.lease], args), keys, "dead"))
