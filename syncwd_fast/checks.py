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
            if configuration_problem(exc) and not _denied(exc):  # e.g. a database index the server does not have
                raise
            log.debug("cannot read maxmemory-policy on %s: %s", name, exc)  # CONFIG renamed or not permitted
            continue
        policy = reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy")
        policy = policy.decode() if isinstance(policy, bytes) else policy
        if policy and policy.startswith("allkeys-"):
            warnings.append(_eviction(name, policy))
    return warnings


def _denied(exc: Exception) -> bool:
    """The ACL denies this user the command (CONFIG and INFO are @admin or
    @dangerous, which least privilege leaves out): nothing can be said, as
    where CONFIG is renamed; every other command works."""
    return isinstance(exc, redis.exceptions.NoPermissionError)


# Settings read per primary, by CONFIG GET (silent where CONFIG is disabled or renamed) and INFO.
SETTINGS = ("maxmemory-policy", "appendonly", "appendfsync", "save")
FULL = 0.9  # used_memory / maxmemory past which noeviction is about to refuse writes


def redis_warnings(redis_client: Any) -> list[str]:
    """What `status` warns about, per primary, in one round trip each: an
    eviction policy that drops dirty values (as eviction_warnings), no
    persistence or RDB snapshots alone (a restart loses records not yet
    drained), an AOF flushed only when the OS likes, persistence failing
    (the last save or AOF write failed), and noeviction close to maxmemory
    (writes about to be refused). What CONFIG would tell is left unsaid where
    CONFIG is disabled, renamed or denied by the ACL; INFO's part is said all
    the same (and CONFIG's where only INFO is denied)."""
    warnings: list[str] = []
    for name, client in primaries(redis_client):
        pipe = client.pipeline(transaction=False)
        for setting in SETTINGS:
            pipe.config_get(setting)
        pipe.info("memory")
        pipe.info("persistence")
        replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if (
                isinstance(reply, redis.exceptions.ResponseError)
                and not _denied(reply)
                and configuration_problem(reply)
            ):
                raise reply
        config: dict[str, str] = {}
        for setting, reply in zip(SETTINGS, replies):
            if isinstance(reply, dict):
                value = reply.get(setting, reply.get(setting.encode()))
                if value is not None:
                    config[setting] = value.decode() if isinstance(value, bytes) else str(value)
            else:
                log.debug("cannot read %s on %s: %s", setting, name, reply)  # CONFIG renamed or not permitted
        memory = replies[-2] if isinstance(replies[-2], dict) else {}
        persistence = replies[-1] if isinstance(replies[-1], dict) else {}
        warnings += _setting_warnings(name, config, memory, persistence)
    return warnings


def _setting_warnings(
    name: str, config: dict[str, str], memory: dict[str, Any], persistence: dict[str, Any]
) -> list[str]:
    said = []
    policy = config.get("maxmemory-policy", "")
    if policy.startswith("allkeys-"):
        said.append(_eviction(name, policy))
    if config.get("appendonly") == "no" and "save" in config:
        if not config["save"].strip():
            said.append(
                f"Redis at {name} has no persistence (appendonly no, no save points): a restart or crash loses every"
                " record not yet drained; set appendonly yes (appendfsync everysec)"
            )
        else:
            said.append(
                f"Redis at {name} persists by RDB snapshots alone (appendonly no, save {config['save']}): a crash"
                " loses every write since the last snapshot, records not yet drained included; set appendonly yes"
            )
    if config.get("appendonly") == "yes" and config.get("appendfsync") == "no":
        said.append(
            f"Redis at {name} has appendfsync no: the OS writes the AOF to disk when it likes (often every 30 s), so"
            " a machine crash may lose that much of the writes; use appendfsync everysec"
        )
    failing = [
        field
        for field in ("rdb_last_bgsave_status", "aof_last_bgrewrite_status", "aof_last_write_status")
        if persistence.get(field) == "err"
    ]
    if failing:
        said.append(
            f"Redis at {name} fails to persist ({', '.join(f + ' err' for f in failing)}): what was written since is"
            " on no disk, and Redis may refuse writes (stop-writes-on-bgsave-error); see its log"
        )
    used, limit = int(memory.get("used_memory") or 0), int(memory.get("maxmemory") or 0)
    if limit and memory.get("maxmemory_policy") == "noeviction" and used / limit > FULL:
        said.append(
            f"Redis at {name} uses {used * 100 // limit}% of maxmemory ({used:,} of {limit:,} bytes) with"
            " maxmemory-policy noeviction: once full it refuses writes (the application's updates and the drain's"
            " acks) until memory is freed; raise maxmemory or drain more often"
        )
    return said


def _eviction(name: str, policy: str) -> str:
    return (
        f"Redis at {name} has maxmemory-policy {policy}: under memory pressure it may evict dirty values"
        " (they carry no TTL until they are in PostgreSQL) before a drain saw them; use noeviction or a"
        " volatile-* policy"
    )


def nothing_registered_warning(redis_client: Any, prefix: str) -> str:
    """Says where the drain looked, and which prefixes hold a registry there."""
    kwargs = getattr(getattr(redis_client, "connection_pool", None), "connection_kwargs", {})
    # A URL with no database (redis://host:6379) leaves "db" out of a plain client's kwargs too.
    where = "this Redis Cluster" if hasattr(redis_client, "get_primaries") else f"Redis database {kwargs.get('db', 0)}"
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
