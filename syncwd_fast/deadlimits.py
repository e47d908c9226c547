"""Limits on the dead letters a table keeps: at most N, none older than a
given age. Off unless asked for; applied by each drain (FastDrainer's
``dead_letter_max`` / ``dead_letter_max_age``) after its partitions are done.

Dropping a dead letter is ``dead-letter purge`` of that entry (purge.lua): the
record's value gets the cache TTL unless a newer value waits to be drained,
and the entry goes only if it was made at or before the time the trim read,
so one made again since is kept. Only dead-letter entries are ever dropped."""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .table import Table

log = logging.getLogger("syncwd_fast")
SCAN_STEP = 1000  # entries per HSCAN call
PURGE_STEP = 1000  # ids per purge.lua call (each call is one short step of Redis's time)


@dataclass
class DeadLetterLimits:
    """``max_count``: dead letters kept per table, the newest; ``max_age``:
    seconds a dead letter is kept. None: no such limit (the default)."""

    max_count: int | None = None
    max_age: float | None = None
    # The oldest entry's time per dead-letter hash as the last trim left it:
    # new entries are newer, so no scan for age is needed before it expires.
    _oldest: dict[str, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.max_count is not None and (not isinstance(self.max_count, int) or self.max_count < 1):
            raise ValueError(f"dead_letter_max must be an int >= 1, got {self.max_count!r}")
        if self.max_age is not None and not self.max_age > 0:
            raise ValueError(f"dead_letter_max_age must be seconds > 0, got {self.max_age!r}")

    def __bool__(self) -> bool:
        return self.max_count is not None or self.max_age is not None

    def trim(self, redis_client: Any, table: Table, prefix: str, now: float) -> int:
        """Drop ``table``'s dead letters over the limits, oldest first; returns
        how many went. Reads each partition's size (HLEN); reads the entries
        (HSCAN, SCAN_STEP at a time) only when a limit may be passed."""
        keys = [table.keys(n, prefix) for n in range(table.partitions)]
        pipe = redis_client.pipeline(transaction=False)
        for k in keys:
            pipe.hlen(k.dead)
        sizes = [int(n) for n in pipe.execute()]
        total = sum(sizes)
        at_most = None if self.max_age is None else now - self.max_age
        over = self.max_count is not None and total > self.max_count
        aged = [
            at_most is not None and bool(size) and self._oldest.get(k.dead, float("-inf")) <= at_most
            for k, size in zip(keys, sizes)
        ]
        if not (over or any(aged)):
            return 0
        old: list[list[tuple[float, bytes]]] = [[] for _ in keys]
        young: list[tuple[float, int, bytes]] = []
        for number, (k, size) in enumerate(zip(keys, sizes)):
            if not size or not (over or aged[number]):
                continue
            oldest = now  # entries made after this read are newer
            for record_id, raw in redis_client.hscan_iter(k.dead, count=SCAN_STEP):
                at = entry_time(raw)
                if at is None:  # no readable time: never dropped by age, nor by count
                    continue
                if at_most is not None and at <= at_most:
                    old[number].append((at, record_id))
                else:
                    young.append((at, number, record_id))
                    oldest = min(oldest, at)
            self._oldest[k.dead] = oldest
        excess = total - sum(map(len, old)) - (self.max_count or total)
        if self.max_count is not None and excess > 0:
            for at, number, record_id in heapq.nsmallest(excess, young):
                old[number].append((at, record_id))
        from .deadletter import purge_partition  # (deadletter imports drain, which imports this module)

        dropped = 0
        for k, entries in zip(keys, old):
            for start in range(0, len(entries), PURGE_STEP):
                step = entries[start : start + PURGE_STEP]
                ids = [record_id for _, record_id in step]
                dropped += purge_partition(redis_client, table, k, ids, max(at for at, _ in step))
            if entries:
                self._oldest.pop(k.dead, None)  # what is left is read again next time
        return dropped


def entry_time(raw: bytes | str) -> float | None:
    """The time (unix seconds) a dead-letter entry was made, None if unreadable."""
    try:
        at = orjson.loads(raw).get("at")
        return float(at) if isinstance(at, int | float) else None
    except (orjson.JSONDecodeError, AttributeError):
        return None


def trim_dead_letters(
    redis_client: Any,
    tables: list[Table],
    prefix: str,
    limits: DeadLetterLimits,
    now: float,
    warn: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Apply ``limits`` to each table's dead letters: how many each lost
    (tables that lost none are left out); each loss is logged as a warning."""
    out: dict[str, int] = {}
    for table in tables:
        n = limits.trim(redis_client, table, prefix, now)
        if n:
            out[table.name] = n
            message = (
                f"{table.name}: {n} dead letters dropped for good (over the limits: {describe(limits)});"
                " their records are lost unless written again"
            )
            log.warning("%s", message)
            if warn:
                warn(message)
    return out


def describe(limits: DeadLetterLimits) -> str:
    parts = []
    if limits.max_count is not None:
        parts.append(f"at most {limits.max_count} per table")
    if limits.max_age is not None:
        parts.append(f"none older than {limits.max_age:g} s")
    return ", ".join(parts)
