"""The `tables` commands as functions: ``list_tables``, ``show_table`` and
``remove_table`` (``repartition_table`` is in repartition.py). A table
registered by mistake (a typo'd name, a table without a primary key) fails
every drain until it is removed here: its partitions' keys and its registry
entry go, so discovery (discover.py) has nothing to find it by."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from . import scripts
from .connection import require_sync
from .discover import discover_tables
from .drain import registered_tables
from .errors import ConfigurationError
from .keys import DEFAULT_PREFIX, PartitionKeys, registry_key, validate_prefix, validate_table_name
from .status import table_status
from .table import Table
from .table_keys import Leases, PartitionState, read_states, scan_table, text

PAGE = 200  # ids per forget.lua call: a short script call


def list_tables(redis: Any, *, prefix: str = DEFAULT_PREFIX, discover: bool = False) -> list[dict[str, Any]]:
    """Every table under ``prefix``: ``name``, ``partitions``, ``key``, ``ttl``,
    ``version_column``, ``registered`` (False: only partition meta knows it,
    shown when the registry is empty or with ``discover``) and ``backlog``
    (``dirty``, ``in_run``, ``inflight``, ``dead``)."""
    require_sync(redis, "list_tables")
    validate_prefix(prefix)
    invalid: list[str] = []
    states = table_status(redis, prefix, None, discover, invalid)
    if invalid:
        raise ConfigurationError("; ".join(invalid) + ": `tables remove` removes such an entry")
    known = {
        **_found(redis, prefix, [n for n, s in states.items() if not s["registered"]]),
        **registered_tables(redis, prefix),
    }
    return [
        {
            "name": name,
            "partitions": s["partitions"],
            "key": s["key"],
            "ttl": known[name].ttl,
            "version_column": known[name].version_column,
            "registered": s["registered"],
            "backlog": {k: s[k] for k in ("dirty", "in_run", "inflight", "dead")},
        }
        for name, s in states.items()
    ]


def _found(redis: Any, prefix: str, names: list[str]) -> dict[str, Table]:
    if not names:
        return {}
    found = discover_tables(redis, prefix)
    return {n: found[n] for n in names if n in found}


def resolve(redis: Any, prefix: str, table: str) -> tuple[Table | None, bool, set[int]]:
    """The table's entry (the registry's, else the one partition meta
    carries; None when neither can be read), whether it is registered, and the
    partitions to look at: those of its count and every one holding a key."""
    validate_table_name(table)
    raw = redis.hget(registry_key(prefix), table)
    entry: Table | None = None
    if raw is not None:
        try:
            entry = Table.from_registry(table, raw)
        except ConfigurationError:
            entry = None  # an unreadable entry: removable all the same
    else:
        entry = discover_tables(redis, prefix).get(table)
    numbers = {number for number, _ in scan_table(redis, prefix, table)}
    if entry is not None:
        numbers |= set(range(entry.partitions))
    if raw is None and not numbers:
        raise ConfigurationError(f"no table {table!r} under prefix {prefix!r}: not registered and no key of it")
    return entry, raw is not None, numbers


def show_table(redis: Any, table: str, *, prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    """The table's registry entry and each partition's state: ``{"name",
    "registered", "entry": {partitions, key, ttl, version_column} or None,
    "partitions": [{partition, dirty, in_run, inflight, dead, run, entry (the
    entry its last writer had), closed, held_by, last_finished_at}]}``."""
    require_sync(redis, "show_table")
    validate_prefix(prefix)
    entry, registered, numbers = resolve(redis, prefix, table)
    states = read_states(redis, [_keys(prefix, table, n) for n in sorted(numbers)])
    return {
        "name": table,
        "registered": registered,
        "entry": _entry(entry),
        "partitions": [s.to_dict() for s in states],
    }


def _entry(t: Table | None) -> dict[str, Any] | None:
    if t is None:
        return None
    return {"partitions": t.partitions, "key": list(t.key_columns), "ttl": t.ttl, "version_column": t.version_column}


def _keys(prefix: str, table: str, number: int) -> PartitionKeys:
    return PartitionKeys(prefix, table, number)


@dataclass
class Removed:
    """What ``remove_table`` removed: the registry entry (``registered``), the
    partitions' keys (``keys_deleted``, values included) and, with force, the
    records it dropped: ``dirty``, ``in_run``, ``inflight``, ``dead`` (each as
    `status` counts them) and ``values`` deleted."""

    table: str
    registered: bool
    partitions: list[int] = field(default_factory=list)
    keys_deleted: int = 0
    dirty: int = 0
    in_run: int = 0
    inflight: int = 0
    dead: int = 0
    values: int = 0
    forced: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def dropped(self) -> int:
        return self.dirty + self.in_run + self.inflight + self.dead


def describe_pending(states: list[PartitionState]) -> str:
    waiting = [s for s in states if s.pending]
    total = {k: sum(getattr(s, k) for s in waiting) for k in ("dirty", "in_run", "inflight", "dead")}
    runs = [s.number for s in waiting if s.run]
    return (
        f"{total['dirty']} dirty, {total['in_run']} in a run, {total['inflight']} in flight, {total['dead']} dead"
        f" letters (partitions {', '.join(str(s.number) for s in waiting)}"
        + (f"; a run under way or left by a stopped drain in {', '.join(map(str, runs))}" if runs else "")
        + ")"
    )


def remove_table(
    redis: Any, table: str, *, prefix: str = DEFAULT_PREFIX, force: bool = False, values: bool = False
) -> Removed:
    """Remove a table: its partitions' keys and its registry entry, so no
    drain looks at it and discovery cannot find it again. Refused (a
    ConfigurationError saying what is left) while a record of it waits:
    dirty, in a run, in flight or dead-lettered, unless ``force``, which
    drops them (counted in the result) with their values. ``values``: also
    delete the cached values of records that landed (else they stay until
    their TTL, as the application's cache). Each partition's lease is held
    meanwhile: one a drain holds is refused, nothing changed.

    A writer that still writes the table writes new records: they are kept,
    and bring the table back (its partition meta and its registry entry at once).
    Stop or fix every writer of the table first."""
    require_sync(redis, "remove_table")
    validate_prefix(prefix)
    entry, registered, numbers = resolve(redis, prefix, table)
    parts = [_keys(prefix, table, n) for n in sorted(numbers)]
    out = Removed(table, registered, [k.number for k in parts], forced=force)
    with Leases(redis, parts, f"syncwd-fast tables remove {table}") as leases:
        states = read_states(redis, parts)
        if not force and any(s.pending for s in states):
            raise ConfigurationError(
                f"table {table!r} still has {describe_pending(states)}: nothing was changed. Drain it first"
                f" (`syncwd-fast drain --table {table}`; a run left by a stopped drain is finished by the next),"
                f" retry or purge its dead letters (`syncwd-fast dead-letter retry|purge --table {table}`), or"
                " remove it with --force, which drops them"
            )
        for keys, state in zip(parts, states):
            done = scripts.call(
                redis,
                "remove",
                [keys.lease, keys.meta, keys.dirty, keys.dead, keys.tombs, keys.recreated],
                [leases.token, "force" if force else "", keys.run_prefix],
            )
            if int(done[0]) == -1:
                raise leases.lost(keys)
            if int(done[0]) == 0:
                raise ConfigurationError(
                    f"a writer wrote records of {table!r} while it was being removed (partition {keys.number}:"
                    f" {int(done[1])} dirty): partitions {', '.join(map(str, out.partitions[: parts.index(keys)]))}"
                    " were emptied, the table stays registered and nothing is lost. Stop its writers, then run"
                    " `tables remove` again"
                )
            out.keys_deleted += int(done[4])
            if force:
                out.dirty += int(done[1])
                out.dead += int(done[3])
                out.in_run += state.in_run
                out.inflight += state.inflight
        out.keys_deleted += _sweep(redis, prefix, table, {k.number: k for k in parts}, leases, force, values, out)
    if registered:
        redis.hdel(registry_key(prefix), table)
    return out


def _sweep(
    redis: Any,
    prefix: str,
    table: str,
    parts: dict[int, PartitionKeys],
    leases: Leases,
    force: bool,
    values: bool,
    out: Removed,
) -> int:
    """Delete what remove.lua left, a SCAN page at a time: run keys of
    earlier runs, and values as the options say (forget.lua keeps a value
    whose id is dirty: written since). Returns keys deleted."""
    mode = "all" if values else "untimed" if force else None
    deleted = 0
    page: dict[int, list[str]] = {}
    runs: dict[int, list[str]] = {}

    def flush(number: int) -> None:
        nonlocal deleted
        keys = parts[number]
        if runs.get(number):
            names = [(keys.base + rest).encode("utf-8", "surrogateescape") for rest in runs.pop(number)]
            deleted += int(redis.unlink(*names))
        ids = page.pop(number, [])
        for start in range(0, len(ids), PAGE):
            chunk = ids[start : start + PAGE]
            n = int(
                scripts.call(
                    redis,
                    "forget",
                    [keys.lease, keys.dirty],
                    [leases.token, mode, keys.value_prefix, *(scripts.id_wire(i) for i in chunk)],
                )
            )
            if n == -1:
                raise leases.lost(keys)
            deleted += n
            out.values += n

    for number, rest in scan_table(redis, prefix, table):
        if number not in parts:  # a key that appeared since: a writer of the table writes again
            continue
        if rest.startswith("run:"):
            runs.setdefault(number, []).append(rest)
        elif rest.startswith("v:") and mode is not None:
            page.setdefault(number, []).append(rest[2:])
        else:
            continue
        if len(page.get(number, ())) >= PAGE or len(runs.get(number, ())) >= PAGE:
            flush(number)
    for number in list({*page, *runs}):
        flush(number)
    return deleted


__all__ = ["Removed", "list_tables", "remove_table", "resolve", "show_table", "text"]
