"""What an operator should be told before trusting a drain or a status: Redis
settings that lose data, and a drain that has nothing to do because it looks
in the wrong place."""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions

from .connection import primaries
from .discover import SCAN_COUNT
from .faults import configuration_problem
from .keys import registry_key

log = logging.getLogger("syncwd_fast")


def eviction_warnings(redis_client: Any) -> list[str]:
    """A warning per primary whose ``maxmemory-policy`` may evict dirty values.

    Dirty values carry no TTL until they are durable: ``noeviction`` and the
    ``volatile-*`` policies never evict them (only durable, TTL-carrying
    values), but an ``allkeys-*`` policy may evict a record before any drain
    saw it. CONFIG may be disabled or renamed: then nothing can be said."""
    warnings = []
    for name, client in primaries(redis_client):
        try:
            reply = client.config_get("maxmemory-policy")
        except redis.exceptions.ResponseError as exc:
            if configuration_problem(exc):  # e.g. a database index the server does not have
                raise
            log.debug("cannot read maxmemory-policy on %s: %s", name, exc)  # CONFIG renamed or not permitted
            continue
        policy = reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy")
        policy = policy.decode() if isinstance(policy, bytes) else policy
        if policy and policy.startswith("allkeys-"):
            warnings.append(
                f"Redis at {name} has maxmemory-policy {policy}: under memory pressure it may evict dirty values"
                " (they carry no TTL until they are in PostgreSQL) before a drain saw them; use noeviction or a"
                " volatile-* policy"
            )
    return warnings


def nothing_registered_warning(redis_client: Any, prefix: str) -> str:
    """Says where the drain looked, and which prefixes hold a registry there."""
    kwargs = getattr(getattr(redis_client, "connection_pool", None), "connection_kwargs", {})
    where = f"Redis database {kwargs.get('db', 0)}" if "db" in kwargs else "this Redis Cluster"
    others = []
    try:
        for key in redis_client.scan_iter(match="*:tables", count=SCAN_COUNT):
            name = key.decode(errors="replace") if isinstance(key, bytes) else key
            others.append(name[: -len(":tables")])
            if len(others) == 5:
                break
    except redis.exceptions.RedisError as exc:
        log.debug("cannot look for other registries: %s", exc)
    hint = f"; registries found under prefixes {', '.join(sorted(others))}" if others else ""
    return (
        f"nothing is registered under prefix {prefix!r} ({registry_key(prefix)} is empty) in {where} and no partition"
        f" meta was found: wrong --redis database or --prefix?{hint}"
    )
