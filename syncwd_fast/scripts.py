"""The Lua scripts of ``lua/``: loaded once, called by SHA, typed wrappers.

Scripts ship as package files (``syncwd_fast.lua``) and are called with
EVALSHA; on NOSCRIPT (a restarted or failed-over Redis) the source is sent
once with EVAL, which caches it on that node again.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
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


# --- write side ---------------------------------------------------------------


def write_args(keys: PartitionKeys, items: list[tuple[str, bytes]]) -> tuple[list[str], list[Any]]:
    args: list[Any] = [keys.value_prefix]
    for record_id, value in items:
        args.append(record_id)
        args.append(value)
    return [keys.dirty], args


# --- drain side ---------------------------------------------------------------


def lease(client: Any, keys: PartitionKeys, op: str, token: str, ms: int = 0) -> bool:
    return bool(call(client, "lease", [keys.lease], [op, token, ms]))


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


@dataclass(frozen=True)
class Popped:
    ids: list[str]
    values: list[bytes | None]
    remaining: int


def pop(client: Any, keys: PartitionKeys, run: str, token: str, count: int, lease_ms: int) -> Popped:
    result = _fenced(
        call(
            client, "pop", [keys.run(run), keys.inflight(run), keys.lease], [count, token, lease_ms, keys.value_prefix]
        ),
        keys,
        "pop",
    )
    ids = [_text(i) for i in result[0]]
    # Lua false comes back as None; a str value means a decode_responses client.
    values = [v.encode() if isinstance(v, str) else v for v in result[1]]
    return Popped(ids, values, int(result[2]))


def ack(
    client: Any, keys: PartitionKeys, run: str, token: str, ttl: int, upserted: list[str], deleted: list[str]
) -> tuple[int, int]:
    result = _fenced(
        call(
            client,
            "ack",
            [keys.inflight(run), keys.run(run), keys.dirty, keys.meta, keys.lease, keys.dead],
            [token, keys.value_prefix, ttl, len(upserted), *upserted, *deleted],
        ),
        keys,
        "ack",
    )
    return int(result[0]), int(result[1])


def dead(client: Any, keys: PartitionKeys, run: str, token: str, entries: list[tuple[str, str]]) -> int:
    args: list[Any] = [token, keys.value_prefix, round(time.time(), 3)]
    for record_id, reason in entries:
        args.append(record_id)
        args.append(reason)
    return int(_fenced(call(client, "dead", [keys.inflight(run), keys.dead, keys.lease], args), keys, "dead"))
