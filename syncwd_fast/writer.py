"""`Syncwd`: the write side. The application writes a record's latest state
here instead of to PostgreSQL; a drain moves it later."""

from __future__ import annotations

import datetime
import decimal
import enum
import time
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
from redis.exceptions import ConnectionError, RedisError, ResponseError, TimeoutError

from . import layout, rows, scripts
from .connection import require_sync
from .errors import ConfigurationError
from .faults import slot_moving
from .keys import DEFAULT_PREFIX, REGISTRY_EPOCH, TOMBSTONE, canonical_id, new_epoch, registry_key, validate_prefix
from .table import Table

# One write.lua call holds at most CALL_RECORDS records and about CALL_BYTES of
# ids and values: its time in Redis grows with both (a few us per record plus
# the bytes it copies), and while it runs Redis serves nobody else. Sized so a
# call of wide records takes well under 2 ms; many calls share a round trip.
CALL_RECORDS = 128
CALL_BYTES = 16 * 1024
PIPELINE = 64  # Lua calls per round trip; bounds the memory update_many holds
# How long a write call waits for a Redis Cluster slot that is being moved
# (resharding): a command on several keys of a slot is refused (TRYAGAIN) until
# they are all on one node, so a partition's writes wait for its slot's move.
SLOT_MOVE_WAIT_S = 10.0
# How often a writer re-asserts its tables' registry entries (HSETNX, sent with
# a write): a lost P:tables entry comes back without a round trip per write.
REASSERT_SECONDS = 5.0

Call = tuple[list[str], list[Any]]  # one write.lua call: keys, args

# A key given by itself rather than as a row (date covers datetime; Enum covers
# str and int enums). bool stays out: a stray True is more likely a mistake.
SCALAR_KEYS = (str, int, float, decimal.Decimal, uuid.UUID, datetime.date, datetime.time, enum.Enum)


def table_of(obj: Any) -> Table:
    """The `Table` a model declares: a ``__syncwd_table__`` attribute, or, as in
    the original syncwd, a ``SourceTableName()`` / ``TableName()`` method
    (key column ``id`` unless ``__syncwd_key__`` says otherwise)."""
    if isinstance(obj, Table):
        return obj
    declared = getattr(obj, "__syncwd_table__", None)
    if isinstance(declared, Table):
        return declared
    name_of = getattr(obj, "SourceTableName", None) or getattr(obj, "TableName", None)
    if callable(name_of):
        try:
            name = name_of()
        except TypeError:  # an instance method reached through the class
            name = name_of(obj)
        return Table(name, key=getattr(obj, "__syncwd_key__", "id"))
    raise ConfigurationError(
        f"{obj!r:.80} is not a Table and declares none (set __syncwd_table__ = Table(...) or define SourceTableName())"
    )


def describe(table: Table) -> str:
    """A table's registered options, as an operator reads them."""
    return (
        f"key={','.join(table.key_columns)} partitions={table.partitions} ttl={table.ttl}"
        f" version_column={table.version_column}"
    )


class Syncwd:
    """Write hot records to Redis and mark them dirty for the next drain.

    >>> sw = Syncwd(redis.Redis())
    >>> sw.update(Table("player_progress", key="user_id"), {"user_id": 7, "level": 3})
    """

    def __init__(self, redis: Any, prefix: str = DEFAULT_PREFIX) -> None:
        require_sync(redis, "Syncwd")
        self.redis = redis
        self.prefix = validate_prefix(prefix)
        self._tables: dict[str, Table] = {}
        self._asserted: dict[str, float] = {}  # table -> when its registry entry was last written or seen

    # --- tables -------------------------------------------------------------

    def register(self, table: Table, replace: bool = False) -> Table:
        """Record the table in ``P:tables`` (done on first write anyway). A
        table registered with other options (another program's ``Table``, or
        this one's before a change) is refused with a ConfigurationError naming
        both, unless ``replace``: a silent last-writer-wins would switch, say,
        another writer's version guard off. The partition count cannot be
        replaced so (the records' partitions follow from it)."""
        known = self._tables.get(table.name)
        if known == table:
            return table
        if not self._tables:  # this writer's first table: the prefix's key layout, once
            layout.claim(self.redis, self.prefix)
        # Read and written in one script: no other writer's entry slips in between.
        status, *current = scripts.call(
            self.redis,
            "register",
            [registry_key(self.prefix)],
            [
                table.name,
                table.to_registry(),
                table.partitions,
                "replace" if replace else "",
                REGISTRY_EPOCH,
                new_epoch(),
            ],
        )
        if int(status) != 0:
            existing = Table.from_registry(table.name, current[0])
            if int(status) == 2:
                raise ConfigurationError(
                    f"table {table.name!r} is registered with {existing.partitions} partitions, not "
                    f"{table.partitions}: start this writer with Table(..., partitions={existing.partitions})"
                    " (after a `tables repartition`, the count every writer must have), or change the count"
                    f" with `syncwd-fast tables repartition {table.name} --partitions {table.partitions}` (or"
                    ' repartition_table()) first (docs/operations.md, "A partition count change")'
                )
            if existing != table:  # the same options spelled otherwise are no conflict
                raise ConfigurationError(
                    f"table {table.name!r} is registered as {describe(existing)}, this writer has it as "
                    f"{describe(table)}: make them agree, or replace the entry once with "
                    "Syncwd.register(table, replace=True)"
                )
        self._tables[table.name] = table
        self._asserted[table.name] = time.monotonic()
        return table

    def _reassert_due(self, t: Table) -> bool:
        return time.monotonic() - self._asserted.get(t.name, float("-inf")) >= REASSERT_SECONDS

    def _table(self, table: Any) -> Table:
        if isinstance(table, str):
            try:
                return self._tables[table]
            except KeyError:
                raise ConfigurationError(f"table {table!r} is not registered with this Syncwd") from None
        return self.register(table_of(table))

    def _id(self, table: Table, key_or_row: Any) -> tuple[str, list[Any]]:
        if isinstance(key_or_row, SCALAR_KEYS) and not isinstance(key_or_row, bool):
            values = [key_or_row]
        elif isinstance(key_or_row, (tuple, list)):
            values = list(key_or_row)
        else:
            values = rows.stored_key_values(key_or_row, table.key_columns)
        if len(values) != len(table.key_columns):
            raise ValueError(f"table {table.name!r} has key {table.key_columns}, got {values!r}")
        return canonical_id(values), values

    # --- writes -------------------------------------------------------------

    def update(self, table: Any, row: Any = None) -> str:
        """Store ``row`` as the record's latest state; returns its id.

        ``update(model)`` works for a model that declares its table."""
        if row is None:
            row = table
        t = self._table(table)
        ids: list[str] = []
        self._write(t, [row], deleting=False, ids=ids)
        return ids[0]

    def update_many(self, table: Any, rows_: Iterable[Any]) -> int:
        """Store many rows: one Lua call per partition chunk, pipelined;
        memory stays bounded however many rows the iterable yields."""
        return self._write(self._table(table), rows_, deleting=False)

    def delete(self, table: Any, key_or_row: Any = None) -> str:
        """Mark the record deleted: the drain deletes its row in PostgreSQL."""
        if key_or_row is None:
            key_or_row = table
        t = self._table(table)
        ids: list[str] = []
        self._write(t, [key_or_row], deleting=True, ids=ids)
        return ids[0]

    def get(self, table: Any, key_or_row: Any) -> dict[str, Any] | None:
        """The record's latest state as Redis holds it; None if absent or deleted."""
        t = self._table(table)
        record_id, _ = self._id(t, key_or_row)
        value = self.redis.get(t.keys(t.partition(record_id), self.prefix).value(record_id))
        if value is None:
            return None
        if isinstance(value, str):
            value = value.encode()
        if value.startswith(TOMBSTONE):
            return None
        result: dict[str, Any] = orjson.loads(value)
        return result

    def _write(self, t: Table, items: Iterable[Any], deleting: bool, ids: list[str] | None = None) -> int:
        """``ids``: when given, the record ids written are appended to it."""
        key = t.key_columns
        entry = t.to_registry()
        reassert: Table | None = t if self._reassert_due(t) else None  # rides along the first round trip
        pending: dict[int, list[tuple[str, bytes]]] = {}
        size: dict[int, int] = {}  # bytes of each pending call
        calls: list[Call] = []
        n = 0
        for item in items:
            if deleting:
                record_id, values = self._id(t, item)
                value = rows.tombstone(key, values)
            else:
                if isinstance(item, (str, bytes)):
                    raise ValueError(f"a row must be a mapping or an object, got {item!r:.80}")
                values, value = rows.record(item, key)
                record_id = canonical_id(values)
            if ids is not None:
                ids.append(record_id)
            number = t.partition(record_id)
            part = pending.setdefault(number, [])
            part.append((record_id, value))
            size[number] = size.get(number, 0) + len(record_id) + len(value)
            n += 1
            if len(part) == CALL_RECORDS or size[number] >= CALL_BYTES:
                calls.append(scripts.write_args(t.keys(number, self.prefix), entry, part))
                pending[number] = []
                size[number] = 0
                if len(calls) == PIPELINE:
                    self._send(calls, reassert, t)
                    calls, reassert = [], None
        calls.extend(
            scripts.write_args(t.keys(number, self.prefix), entry, part) for number, part in pending.items() if part
        )
        self._send(calls, reassert, t)
        return n

    def _write_call(self, keys_: list[str], args: list[Any]) -> Any:
        """One write.lua call through the main client, again while its slot
        is being moved (for up to SLOT_MOVE_WAIT_S: then the error is the
        caller's). A call again is harmless: it writes the same values."""
        deadline = time.monotonic() + SLOT_MOVE_WAIT_S
        pause = 0.01
        while True:
            try:
                return scripts.call(self.redis, "write", keys_, args)
            except RedisError as exc:
                if not slot_moving(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def _call(self, t: Table | None, keys_: list[str], args: list[Any]) -> None:
        try:
            if int(self._write_call(keys_, args)) < 0 and t is not None:
                self._restore(t)
        except ResponseError as exc:
            text = str(exc)
            if not text.startswith("SYNCWD_PARTITIONS"):
                raise
            there, mine = (text.split() + ["?", "?"])[1:3]
            name = t.name if t else "this table"
            raise ConfigurationError(
                f"table {name!r} has {there} partitions now (repartitioned), this writer has it with {mine}:"
                f" restart it with Table(..., partitions={there}) (the records refused were not written); to change"
                f" the count, `syncwd-fast tables repartition {name} --partitions {mine}`"
            ) from None

    def _send(self, calls: list[Call], reassert: Table | None = None, t: Table | None = None) -> None:
        """Run the write calls, pipelined per node. ``reassert``: HSETNX the
        table's registry entry too, in the round trip of the writes to the
        registry's node (on a cluster where none goes there, one command more
        per interval); it restores a lost entry, never replaces another writer's."""
        if not calls:
            return
        if len(calls) == 1 and reassert is None:
            self._call(t, *calls[0])
            return
        write = scripts.script("write")
        registry = registry_key(self.prefix)
        asserted = fresh = False
        for client, group, here in self._by_node(calls, registry if reassert else None):
            pipe = client.pipeline(transaction=False)
            for keys_, args in group:
                pipe.evalsha(write.sha, len(keys_), *keys_, *args)
            if here and reassert:
                pipe.hsetnx(registry, reassert.name, reassert.to_registry())
                pipe.hsetnx(registry, REGISTRY_EPOCH, new_epoch())
            try:
                results = pipe.execute(raise_on_error=False)
            except (ConnectionError, TimeoutError):
                if client is self.redis:
                    raise
                # A node's own client knows no other route: its node died or
                # left (a failover). Which calls landed is unknown: all again,
                # in order, through the cluster client, which asks the cluster
                # for the slots' new masters.
                results = [ConnectionError()] * len(group)
            failed = [i for i, result in enumerate(results[: len(group)]) if isinstance(result, Exception)]
            fresh = fresh or any(isinstance(x, int) and x < 0 for x in results[: len(group)])
            if failed:
                # NOSCRIPT after a restart, a MOVED slot, ...: the calls that failed again,
                # in order, through the main client, which loads scripts and follows
                # redirects; and a partition's calls after one that failed, which keeps
                # its last value last. Not a call that landed otherwise: another writer
                # may have written its ids since, and it would put the older value back.
                behind: set[str] = set()  # partitions (dirty keys) with a call failed so far
                for i in range(failed[0], len(group)):
                    keys_, args = group[i]
                    if isinstance(results[i], Exception) or keys_[0] in behind:
                        behind.add(keys_[0])
                        self._call(t, keys_, args)
            if here and reassert:
                extra = results[len(group) :]
                asserted = bool(extra) and not any(isinstance(result, Exception) for result in extra)
        if reassert:
            if not asserted:  # through the main client: it follows redirects
                self.redis.hsetnx(registry, reassert.name, reassert.to_registry())
                self.redis.hsetnx(registry, REGISTRY_EPOCH, new_epoch())
            self._asserted[reassert.name] = time.monotonic()
        elif fresh and t is not None:
            self._restore(t)

    def _restore(self, t: Table) -> None:
        """A partition's meta had no entry (write.lua said so): the table is
        new there, or `tables remove` took it; HSETNX its registry entry now,
        not at the next reassert, so a plain drain finds the record."""
        self.redis.hsetnx(registry_key(self.prefix), t.name, t.to_registry())
        self.redis.hsetnx(registry_key(self.prefix), REGISTRY_EPOCH, new_epoch())
        self._asserted[t.name] = time.monotonic()

    def _by_node(self, calls: list[Call], extra_key: str | None = None) -> list[tuple[Any, list[Call], bool]]:
        """Cluster clients cannot pipeline scripts: pipeline per node instead.
        Each group says whether ``extra_key`` lives on its node."""
        if not hasattr(self.redis, "get_node_from_key"):
            return [(self.redis, calls, extra_key is not None)]
        extra = self.redis.get_node_from_key(extra_key) if extra_key is not None else None
        groups: dict[str, tuple[Any, list[Call], bool]] = {}
        for call in calls:
            node = self.redis.get_node_from_key(call[0][0])
            if node.name not in groups:
                here = extra is not None and node.name == extra.name
                groups[node.name] = (self.redis.get_redis_connection(node), [], here)
            groups[node.name][1].append(call)
        return list(groups.values())
