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

import orjson
from redis.client import NEVER_DECODE
from redis.exceptions import NoScriptError, ResponseError

from . import speedups
from .errors import ConfigurationError, LeaseLost
from .keys import PartitionKeys
from .wire import Wire, held, pack

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
    wire = Wire.of(client)
    try:
        if wire is None:
            return client.evalsha(s.sha, len(keys), *keys, *args)
        (result,) = wire.send(pack(b"EVALSHA", s.sha, len(keys), *keys, *args), 1)
        if isinstance(result, Exception):
            raise result
        return result
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


def ids_text(raw: list[bytes], pure: bool | None = None) -> list[str]:
    """``_id_text`` of each id: in C where built (``pure`` False, or None as
    ``speedups.ACTIVE`` says); else in three calls of C rather than one of
    Python per id: joined by NUL, decoded, split; an id holding a NUL (any
    bytes may be an id) splits apart, and then each is decoded alone."""
    if not pure and (pure is False or speedups.ACTIVE == "c"):
        return speedups.module().ids_text(raw)  # type: ignore[no-any-return]
    if not raw:
        return []
    text = b"\0".join(raw).decode("utf-8", "surrogateescape").split("\0")
    return text if len(text) == len(raw) else [_id_text(i) for i in raw]


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


def lease(
    client: Any,
    keys: PartitionKeys,
    op: str,
    token: str,
    ms: int = 0,
    holder: str | None = None,
    holder_id: bytes | None = None,
    dead_token: bytes | None = None,
) -> bool:
    """``op``: "acquire", "takeover" (of the lease ``dead_token`` holds, its
    holder found dead), "renew" or "release"; ``holder`` and ``holder_id``
    name the caller in meta (holder.py)."""
    if op == "renew":
        return bool(call(client, "lease", [keys.lease], [op, token, ms]))
    args: list[Any] = [op, token, ms]
    if holder is not None:
        args.append(holder)
        if holder_id is not None:
            args.append(holder_id)
            if dead_token is not None:
                args.append(dead_token)
    return bool(call(client, "lease", [keys.lease, keys.meta], args))


@dataclass(frozen=True)
class Snapshot:
    run: str
    size: int
    adopted: bool


def snapshot(client: Any, keys: PartitionKeys, token: str, new_run: str) -> Snapshot:
    try:
        raw = call(
            client, "snapshot", [keys.dirty, keys.meta, keys.lease], [token, new_run, keys.run_prefix, int(time.time())]
        )
    except ResponseError as exc:
        if not str(exc).startswith("SYNCWD_MOVING"):
            raise
        count = (str(exc).split() + ["N"])[1]
        raise ConfigurationError(
            f"{keys.table}: a repartition to {count} partitions was cut short (partition {keys.number} is still"
            f" being moved): nothing of it is drained until it finishes; run `syncwd-fast tables repartition"
            f" {keys.table} --partitions {count}` again"
        ) from None
    result = _fenced(raw, keys, "snapshot")
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


def read_in_flight(pipe: Any, keys: PartitionKeys, run: str) -> None:
    """Queue on ``pipe`` the reads of ``run``'s in-flight records and of its
    redo list: two replies, each a list of records, undecoded (cmsgpack is
    binary, whatever the client's decode_responses)."""
    pipe.execute_command("HVALS", keys.inflight(run), **{NEVER_DECODE: []})
    pipe.execute_command("LRANGE", redo_key(keys, run), 0, -1, **{NEVER_DECODE: []})


def packed_ids(record: bytes) -> list[bytes]:
    """The ids of an in-flight record (a cmsgpack array of strings), read
    with every length checked: ValueError for anything else."""
    n = packed_count(record)  # checks the array's header
    at = 3 if record[0] == 0xDC else 5 if record[0] == 0xDD else 1
    ids: list[bytes] = []
    for _ in range(n):
        if at >= len(record):
            raise ValueError("an in-flight record ends early")
        head = record[at]
        if 0xA0 <= head <= 0xBF:
            size, at = head & 0x1F, at + 1
        elif head in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
            width = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}[head]
            size, at = int.from_bytes(record[at + 1 : at + 1 + width], "big"), at + 1 + width
        else:
            raise ValueError(f"an in-flight record holds a {head:#x}, not a string")
        if at + size > len(record):
            raise ValueError("an in-flight record ends early")
        ids.append(record[at : at + size])
        at += size
    return ids


@dataclass(frozen=True)
class Popped:
    ids: list[str]
    values: list[bytes | None]
    remaining: int  # 1 while the run set or its redo list holds ids not popped yet, else 0
    # id -> generation, for records that are a new row after a delete (write.lua)
    recreated: dict[str, str] = field(default_factory=dict)
    # (pop number, ids of that pop): the in-flight records the ids are held by
    pops: list[tuple[int, list[str]]] = field(default_factory=list)
    # ids of a repeated pass over the run set that landed before: the value is
    # gone (a tombstone since deleted, a TTL run out) or carries the TTL its
    # ack gave it; so done, acked with no TTL
    done: list[str] = field(default_factory=list)
    # ids of a repeated pass held by another record of the caller's (read from
    # the redo list, or popped and not acked yet), which decides and counts
    # them, or dead-lettered earlier in this run (counted then): done too
    held: list[str] = field(default_factory=list)
    # ids to merge that a repeated pass read: merged for the first time, or
    # again if Redis lost the ack of their first merge (with no TTL configured,
    # every id of the pass)
    repeated: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Taken:
    """One pop script call: ids taken into one in-flight record, no values yet."""

    raw: list[bytes]  # the ids as Redis holds them
    remaining: int
    recreated: list[bytes | str | None]  # generations, aligned with raw (empty: none)
    number: int  # the in-flight record's pop number
    again: bool = False  # a repeated pass over the run set: a missing value is an id done
    redo: bool = False  # the ids came from the redo list


def _pop_call(keys: PartitionKeys, run: str, token: str, count: int, lease_ms: int) -> tuple[list[str], list[Any]]:
    return (
        [keys.run(run), keys.inflight(run), redo_key(keys, run), keys.meta, keys.lease, keys.recreated],
        [count, token, lease_ms, run],
    )


def _taken(result: Any, keys: PartitionKeys) -> Taken:
    result = _fenced(result, keys, "pop")
    # Every id is bytes, or (a decode_responses client) every one is text.
    raw: list[bytes] = result[0] if not result[0] or type(result[0][0]) is bytes else [id_wire(i) for i in result[0]]
    redo = len(result) > 5 and int(result[5]) == 1
    return Taken(raw, int(result[1]), list(result[2]), int(result[3]), int(result[4]) == 1, redo)


def _value_keys(keys: PartitionKeys, raw: list[bytes]) -> list[bytes]:
    prefix = keys.value_prefix.encode()
    return [prefix + i for i in raw]


def mget_command(prefix: bytes, raw: list[bytes], pure: bool | None = None) -> bytes:
    """MGET of the values of the ids ``raw`` (``prefix``: the value key
    prefix), packed for the wire: in C where built (as ``ids_text``)."""
    if not pure and (pure is False or speedups.ACTIVE == "c"):
        return speedups.module().mget_command(prefix, raw)  # type: ignore[no-any-return]
    return pack(b"MGET", *[prefix + i for i in raw])


def _mget(client: Any, keys: PartitionKeys, raw: list[bytes]) -> Any:
    # execute_command: a cluster pipeline refuses its mget (and evalsha) methods,
    # though every key of a partition is in one slot.
    wire = Wire.of(client)
    if wire is not None:
        (got,) = wire.send(mget_command(keys.value_prefix.encode(), raw), 1)
        if isinstance(got, Exception):
            raise got
        return got
    return client.execute_command("MGET", *_value_keys(keys, raw))


def _values(got: list[Any]) -> list[bytes | None]:
    # Lua false comes back as None (a missing value); a str value means a
    # decode_responses client, whose every value is text.
    for value in got:
        if value is not None:
            return got if type(value) is bytes else [v.encode() if isinstance(v, str) else v for v in got]
    return got


def read_and_pop(
    client: Any, keys: PartitionKeys, run: str, token: str, count: int, lease_ms: int, read: list[bytes]
) -> tuple[list[bytes | None], Taken]:
    """The values of ``read`` (the ids of the previous pop) and the next pop, in
    one round trip: MGET first, then the pop script. Each is a short command of
    its own, so Redis serves other clients between them, but it wakes up once
    for both (a wake-up costs redis-server about as much CPU as a hundred
    PEXPIREATs)."""
    script_keys, args = _pop_call(keys, run, token, count, lease_ms)
    if not read:
        return [], _taken(call(client, "pop", script_keys, args), keys)
    wire = Wire.of(client)
    if wire is not None:
        got, result = wire.send(
            mget_command(keys.value_prefix.encode(), read)
            + pack(b"EVALSHA", script("pop").sha, len(script_keys), *script_keys, *args),
            2,
        )
    else:
        pipe = client.pipeline(transaction=False)
        _mget(pipe, keys, read)
        pipe.execute_command("EVALSHA", script("pop").sha, len(script_keys), *script_keys, *args)
        got, result = pipe.execute(raise_on_error=False)
    if isinstance(got, Exception):
        raise got
    if isinstance(result, NoScriptError):  # the script did not run: load it and run it now
        result = call(client, "pop", script_keys, args)
    elif isinstance(result, Exception):
        raise result
    return _values(got), _taken(result, keys)


def _landed_or_dead(
    client: Any, keys: PartitionKeys, run: str, raw: list[bytes], values: list[bytes | None]
) -> tuple[list[bool], list[bool]]:
    """In a repeated pass, in one round trip: which values carry a TTL or are
    gone since they were read (only an ack gives a TTL, a write and a dead
    letter leave none, and only an ack deletes a tombstone: landed already),
    and which ids were dead-lettered in ``run`` (their entry names it: done,
    not merged and dead-lettered again). The TTLs are read after the values:
    a write in between clears the TTL, and the id, written again, is merged
    with its newer value by the next run."""
    prefix = keys.value_prefix.encode()
    pipe = client.pipeline(transaction=False)
    for i, value in zip(raw, values):
        if value is not None:
            pipe.execute_command("PTTL", prefix + i)
    pipe.hmget(keys.dead, raw)
    *ttls, entries = pipe.execute()
    left = iter(ttls)
    landed = [value is not None and int(next(left)) != -1 for value in values]
    dead = []
    for entry in entries:
        try:
            dead.append(entry is not None and orjson.loads(entry).get("run") == run)
        except (orjson.JSONDecodeError, AttributeError):
            dead.append(False)
    return landed, dead


def _popped(
    taken: Taken,
    values: list[bytes | None],
    seen: set[str],
    into: Popped,
    acked: list[bool] | None = None,
    redone: Any = None,
    held: list[bool] | None = None,
) -> None:
    ids = ids_text(taken.raw)
    fresh = set(ids) if not taken.again and not taken.recreated else None
    if fresh is not None and len(fresh) == len(ids) and seen.isdisjoint(fresh):  # the common pop: all new
        seen |= fresh
        into.ids.extend(ids)
        into.values.extend(values)
        into.pops.append((taken.number, ids))
        return
    for n, (rid, value, generation) in enumerate(zip(ids, values, taken.recreated or [None] * len(ids))):
        if rid in seen:  # should an id come out twice, it is merged once, its records acked with the batch
            continue
        seen.add(rid)
        if taken.again and (value is None or (acked and acked[n])):
            into.done.append(rid)
            continue
        if taken.again and held and held[n]:
            into.held.append(rid)
            continue
        if taken.again:
            into.repeated.add(rid)
            if taken.redo and redone is not None:
                redone.add(rid)
        into.ids.append(rid)
        into.values.append(value)
        if generation is not None:
            into.recreated[rid] = _text(generation)
    into.pops.append((taken.number, ids))


def pop_batch(
    client: Any,
    keys: PartitionKeys,
    run: str,
    token: str,
    count: int,
    total: int,
    lease_ms: int,
    redone: Any = None,
) -> Popped:
    """Up to ``total`` ids with their values, from pops of at most ``count``
    ids, each pop's MGET sent with the next pop. An id that comes out twice
    (a repeated pass, a rehashed set) is merged once. ``redone`` (kept by
    the caller for the run) holds the ids a repeated pass read from the redo
    list, so that its read of the run set skips them."""
    batch = Popped([], [], 1)
    seen: set[str] = set()
    taken: Taken | None = None
    remaining = 1
    with held(client):  # one connection for the batch's pops
        while True:
            want = min(count, total - len(batch.ids) - (len(taken.raw) if taken else 0))
            if not remaining or want <= 0:
                break
            values, after = read_and_pop(client, keys, run, token, want, lease_ms, taken.raw if taken else [])
            if taken is not None:
                _repeated(client, keys, run, taken, values, seen, batch, redone)
            taken, remaining = (after, after.remaining) if after.raw else (None, after.remaining)
        if taken is not None:
            _repeated(client, keys, run, taken, _values(_mget(client, keys, taken.raw)), seen, batch, redone)
    return Popped(
        batch.ids, batch.values, remaining, batch.recreated, batch.pops, batch.done, batch.held, batch.repeated
    )


def _repeated(
    client: Any,
    keys: PartitionKeys,
    run: str,
    taken: Taken,
    values: list[bytes | None],
    seen: set[str],
    into: Popped,
    redone: Any = None,
) -> None:
    """``_popped``, with what a repeated pass must know of each id read:
    whether it landed before, or is held by another record of the caller's
    (read from the redo list earlier in this pass, or popped by a batch not
    acked yet: merged or being merged by that record, which stays in flight
    until its ack), or was dead-lettered in this run already."""
    if not taken.again:
        _popped(taken, values, seen, into, redone=redone)
        return
    # Asked before the TTLs are read: an ack that ends in between has given
    # the TTL by then.
    ours = [redone is not None and not taken.redo and _id_text(i) in redone for i in taken.raw]
    landed, dead = _landed_or_dead(client, keys, run, taken.raw, values)
    _popped(taken, values, seen, into, landed, redone, [a or b for a, b in zip(ours, dead)])


def pop(client: Any, keys: PartitionKeys, run: str, token: str, count: int, lease_ms: int) -> Popped:
    """About ``count`` ids of the run (SSCAN's COUNT is a hint) as one in-flight
    record, then their values with a plain MGET."""
    taken = _taken(call(client, "pop", *_pop_call(keys, run, token, count, lease_ms)), keys)
    batch = Popped([], [], taken.remaining)
    if taken.raw:
        _repeated(client, keys, run, taken, _values(_mget(client, keys, taken.raw)), set(), batch)
    return batch


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
    done: list[str] | None = None,
) -> tuple[int, int]:
    """Drop the in-flight records ``pops``: every id they hold was merged and its
    value gets the TTL, except ``kept`` (acked without a TTL: the version guard
    skipped them), ``deleted`` (tombstones, removed) and ``done`` (a repeated
    pass merged nothing of them: no TTL, their dead letters untouched); ``recreated``: id ->
    generation of merged new rows after a delete. No pops: only whether the run
    is over. Returns (more, in-flight records left): more is 1 while the run set
    or its redo list holds ids not popped yet."""
    # As Redis holds them: an id that is not UTF-8 (done in a repeated pass) is text with surrogates.
    kept_wire = [id_wire(i) for i in kept or []]
    deleted_wire = [id_wire(i) for i in deleted or []]
    done_wire = [id_wire(i) for i in done or []]
    pairs = [x for rid, generation in (recreated or {}).items() for x in (id_wire(rid), generation)]
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
            [
                token,
                keys.value_prefix,
                ttl,
                run,
                len(pops),
                len(kept_wire),
                len(deleted_wire),
                len(done_wire),
                *pops,
                *kept_wire,
                *deleted_wire,
                *done_wire,
                *pairs,
            ],
        ),
        keys,
        "ack",
    )
    return int(result[0]), int(result[1])


def landing(client: Any, keys: PartitionKeys, token: str, xid: int | str, marks: dict[str, str]) -> int:
    """Note the transaction ``xid`` (a sink's token for it, without "@") on the
    recreated marks it replaces (id -> generation)."""
    if "@" in str(xid):
        raise ValueError(f"a transaction token cannot contain '@': {xid!r}")
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
    args: list[Any] = [token, keys.value_prefix, round(time.time(), 3) if at is None else at, run, len(pops), *pops]
    for record_id, reason in entries:
        args.append(id_wire(record_id))
        # A reason may quote an id that is not UTF-8 (surrogates): kept as escapes.
        args.append(reason.encode("utf-8", "backslashreplace"))
    return int(_fenced(call(client, "dead", [keys.inflight(run), keys.dead, keys.lease], args), keys, "dead"))
