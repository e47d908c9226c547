"""Finding tables from their partitions when the registry ``P:tables`` lost
them (eviction, a failover before it replicated; in a Redis Cluster it lives on
another master than the data).

Every write stores the table's registry entry in its partition's meta hash
(field ``table``, see write.lua), so each partition that was ever written says
what a drain needs about its table beside its own keys.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .connection import primaries
from .keys import REGISTRY_EPOCH, discovered_key, new_epoch, registry_key, validate_prefix
from .table import Table

log = logging.getLogger("syncwd_fast")

SCAN_COUNT = 500  # keys a SCAN call looks at: at 5000, a call over a 1M-key database took 13-15 ms
PIPELINE = 1000  # meta hashes read per round trip


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _scan(redis_client: Any, pattern: str) -> Iterator[bytes | str]:
    """SCAN every primary of a cluster, each with a client of its own, rather
    than trust RedisCluster.scan_iter: which nodes it covers has changed
    between redis-py versions. A plain client is one node."""
    for _, client in primaries(redis_client):
        yield from client.scan_iter(match=pattern, count=SCAN_COUNT)


def _meta_keys(redis_client: Any, prefix: str) -> list[tuple[str, str, int]]:
    """(key, table, partition) of every meta hash under ``prefix``. The glob
    also matches a value key whose id ends in ``}:meta``; the anchored regex
    (no brace or colon inside the tag) keeps only real meta keys."""
    exact = re.compile(re.escape(prefix) + r":\{([^{}:]+):(0|[1-9][0-9]{0,4})\}:meta\Z")
    found = {}
    for raw in _scan(redis_client, f"{prefix}:{{*}}:meta"):
        key = _text(raw)
        match = exact.match(key)
        if match:
            found[key] = (key, match.group(1), int(match.group(2)))
    return sorted(found.values())  # a slot that moved during the SCAN may show up twice


def discover_tables(redis_client: Any, prefix: str, *, pending_only: bool = False) -> dict[str, Table]:
    """The tables whose partitions carry their registry entry in ``P:{T:n}:meta``
    (registered or not). ``pending_only``: only tables with records waiting
    (dirty, in a run or dead-lettered). Invalid or hostile entries are logged
    and skipped."""
    validate_prefix(prefix)
    metas = _meta_keys(redis_client, prefix)
    # per table: (entry, partition has work) of each partition
    seen: dict[str, list[tuple[Table, bool]]] = {}
    for start in range(0, len(metas), PIPELINE):
        chunk = metas[start : start + PIPELINE]
        pipe = redis_client.pipeline(transaction=False)
        for key, _, _ in chunk:
            base = key[: -len("meta")]
            pipe.hmget(key, "table", "run", "closed")
            pipe.exists(base + "dirty", base + "dead")  # one slot: a cluster pipeline takes it
        raw = pipe.execute(raise_on_error=False)
        for i, (key, name, number) in enumerate(chunk):
            if isinstance(raw[2 * i], Exception):  # WRONGTYPE: not a hash, so not one of ours
                log.warning("skipping %.200r: %s", key, raw[2 * i])
                continue
            entry, run, closed = raw[2 * i]
            if entry is None:  # a partition not written since meta carries the entry
                continue
            if closed is not None and not run and raw[2 * i + 1] == 0:
                continue  # left beyond the count by a repartition (repartition.lua), with nothing waiting
            try:
                table = Table.from_registry(name, entry)
            except ValueError as exc:
                log.warning("skipping %.200r: %s", key, exc)
                continue
            if number >= table.partitions:  # no writer of this entry writes there
                log.warning("skipping %.200r: partition %d of a table with %d", key, number, table.partitions)
                continue
            seen.setdefault(name, []).append((table, bool(run) or raw[2 * i + 1] != 0))
    tables = {}
    for name, entries in seen.items():
        live = [table for table, pending in entries if pending]
        if pending_only and not live:
            continue
        tables[name] = _pick(name, live or [table for table, _ in entries])
    return dict(sorted(tables.items()))


def _pick(name: str, candidates: list[Table]) -> Table:
    """Partitions can disagree: a table redefined after its old partitions were
    drained, or mid-way through rewriting them. Candidates are the partitions
    with work when there are any; the most partitions win (each entry covers
    its own partition, so the widest covers all of them), then the most common."""
    counts = Counter(candidates)
    if len(counts) > 1:
        log.warning("partitions of table %s carry %d different registry entries", name, len(counts))
    return max(counts, key=lambda t: (t.partitions, counts[t], t.to_registry()))


def find_unregistered(
    redis_client: Any,
    prefix: str,
    registry: Mapping[str, Table],
    names: Iterable[str] | None = None,
    discover: bool = False,
) -> dict[str, Table]:
    """The tables partition meta knows but ``registry`` lacks, looked for only
    when ``discover`` is set, the registry is empty or lacks one of ``names``
    (a SCAN reads the whole keyspace): every table with records waiting, and
    the named ones whether or not they have work."""
    named = list(names or [])
    wanted = [n for n in named if n not in registry]
    if named and not wanted:
        return {}  # every named table is registered
    if not (discover or not registry or wanted):
        return {}
    # Every table with records waiting, even when only some were named: a
    # registry restored with the named ones alone would stop looking for the rest.
    found = discover_tables(redis_client, prefix, pending_only=True)
    if any(n not in found for n in wanted):  # named tables count with or without work
        everything = discover_tables(redis_client, prefix)
        found.update({n: everything[n] for n in wanted if n in everything})
    return {n: t for n, t in found.items() if n not in registry}


@dataclass(frozen=True)
class Epoch:
    """The registry's epoch now, and whether it differs from the one under
    which a drain last looked for lost tables (then a SCAN is due: the
    registry was lost and created again, and may lack tables)."""

    current: str | None
    changed: bool

    def settle(self, redis_client: Any, prefix: str) -> None:
        """After a look: give the registry an epoch if it has none, and record it."""
        epoch = self.current
        if epoch is None:
            redis_client.hsetnx(registry_key(prefix), REGISTRY_EPOCH, new_epoch())
            epoch = _text(redis_client.hget(registry_key(prefix), REGISTRY_EPOCH))
        redis_client.set(discovered_key(prefix), epoch)


def registry_epoch(redis_client: Any, prefix: str) -> Epoch:
    current = redis_client.hget(registry_key(prefix), REGISTRY_EPOCH)
    seen = redis_client.get(discovered_key(prefix))
    current = _text(current) if current is not None else None
    return Epoch(current, current is None or seen is None or _text(seen) != current)


def restore_registry(redis_client: Any, prefix: str, tables: Mapping[str, Table]) -> list[str]:
    """Put the entries back with HSETNX: restores a lost entry, never replaces
    another writer's. Returns the names restored."""
    if not tables:
        return []
    pipe = redis_client.pipeline(transaction=False)
    for name, table in tables.items():
        pipe.hsetnx(registry_key(prefix), name, table.to_registry())
    pipe.hsetnx(registry_key(prefix), REGISTRY_EPOCH, new_epoch())
    return [name for name, added in zip(tables, pipe.execute()) if added]
