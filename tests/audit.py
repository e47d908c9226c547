"""An audit of who merged what, and when, recorded by PostgreSQL itself.

Statement-level triggers on the target (they leave the drain on its usual
path: only row triggers change how it merges) write one audit row per
statement: BEFORE each statement the backend, its transaction, its
application_name, the time and the advisory locks it holds; AFTER each, with
the statement's transition table, the ids it wrote. A merge takes its
partition's advisory lock before its first statement and holds it to COMMIT,
so a transaction's span [first BEFORE, last AFTER] lies inside the lock.
Two spans of one partition that overlap are two merges of it at once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from syncwd_fast.keys import partition_of

_FUNCTIONS = """
CREATE FUNCTION {s}.audit_begin() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {s}.audit (kind, pid, xid, app, at, locks) VALUES (
    'begin', pg_backend_pid(), txid_current(), current_setting('application_name'), clock_timestamp(),
    ARRAY(SELECT l.objid::int FROM pg_locks l WHERE l.locktype = 'advisory' AND l.pid = pg_backend_pid()
          AND l.granted AND l.objsubid = 2 AND l.classid::int = {lock_class} ORDER BY 1));
  RETURN NULL;
END $$;
CREATE FUNCTION {s}.audit_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {s}.audit (kind, pid, xid, app, at, ids)
  SELECT lower(TG_OP), pg_backend_pid(), txid_current(), current_setting('application_name'), clock_timestamp(),
         ARRAY(SELECT id FROM changed);
  RETURN NULL;
END $$;
"""

_TRIGGERS = """
CREATE TRIGGER audit_begin BEFORE INSERT OR UPDATE OR DELETE ON {t} FOR EACH STATEMENT
  EXECUTE FUNCTION {s}.audit_begin();
CREATE TRIGGER audit_insert AFTER INSERT ON {t} REFERENCING NEW TABLE AS changed FOR EACH STATEMENT
  EXECUTE FUNCTION {s}.audit_rows();
CREATE TRIGGER audit_update AFTER UPDATE ON {t} REFERENCING NEW TABLE AS changed FOR EACH STATEMENT
  EXECUTE FUNCTION {s}.audit_rows();
CREATE TRIGGER audit_delete AFTER DELETE ON {t} REFERENCING OLD TABLE AS changed FOR EACH STATEMENT
  EXECUTE FUNCTION {s}.audit_rows();
"""


def install(db: psycopg.Connection[Any], schema: str, table: str, lock_class: int) -> None:
    """The audit table ``schema.audit`` and the triggers on ``table`` (whose
    key column is ``id``). ``lock_class``: the first key of the partitions'
    advisory locks (syncwd_fast.sinks.postgres.lock_key), the second being
    the partition."""
    db.execute(
        f"CREATE TABLE {schema}.audit (n bigserial PRIMARY KEY, kind text NOT NULL, pid int NOT NULL,"
        " xid bigint NOT NULL, app text NOT NULL, at timestamptz NOT NULL, locks int[], ids bigint[])"
    )
    db.execute(_FUNCTIONS.format(s=schema, lock_class=int(lock_class)))
    db.execute(_TRIGGERS.format(s=schema, t=table))


@dataclass
class Merge:
    """One transaction that wrote the target."""

    pid: int
    xid: int
    app: str
    start: datetime
    end: datetime
    locks: set[int] = field(default_factory=set)  # partitions whose advisory lock it held
    partitions: set[int] = field(default_factory=set)  # partitions of the ids it wrote
    rows: int = 0


def merges(db: psycopg.Connection[Any], schema: str, partitions: int) -> list[Merge]:
    """Every transaction the audit saw, its ids mapped to partitions with the
    project's own partition function."""
    found: dict[tuple[int, int], Merge] = {}
    for kind, pid, xid, app, at, locks, ids in db.execute(
        f"SELECT kind, pid, xid, app, at, locks, ids FROM {schema}.audit ORDER BY n"
    ):
        merge = found.get((pid, xid))
        if merge is None:
            merge = found[(pid, xid)] = Merge(pid, xid, app, at, at)
        merge.start, merge.end = min(merge.start, at), max(merge.end, at)
        if kind == "begin":
            merge.locks.update(locks or ())
        else:
            merge.rows += len(ids or ())
            merge.partitions.update(partition_of(str(i), partitions) for i in ids or ())
    return [m for m in found.values() if m.rows]


def overlaps(found: list[Merge]) -> list[tuple[int, Merge, Merge]]:
    """(partition, a, b) for every two transactions that wrote one partition
    at the same time."""
    by_partition: dict[int, list[Merge]] = defaultdict(list)
    for merge in found:
        for number in merge.partitions:
            by_partition[number].append(merge)
    out = []
    for number, group in sorted(by_partition.items()):
        group.sort(key=lambda m: m.start)
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                if b.start >= a.end:
                    break  # sorted by start: no later one begins before a ends
                out.append((number, a, b))
    return out


def unfenced(found: list[Merge]) -> list[Merge]:
    """Transactions that wrote a partition other than the one advisory lock
    they held: a merge outside its fence."""
    return [m for m in found if len(m.partitions) != 1 or m.locks != m.partitions]
