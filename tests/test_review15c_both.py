"""Review 15c: the same scenario against PostgreSQL and MariaDB (the
MariaDB sink promises PostgreSQL's semantics). Each failing test documents a
defect (see its docstring)."""

from __future__ import annotations

from syncwd_fast import FastDrainer, Syncwd, Table

from .helpers import dead_entries
from .targets import db, dsn, schema, target  # noqa: F401


def drain(r, dsn, prefix, **kw):
    kw.setdefault("retries", 1)
    kw.setdefault("retry_backoff", 0.05)
    return FastDrainer(r, dsn, prefix=prefix, **kw).drain()


def test_review15c_delete_then_a_refused_write_leaves_the_deleted_row(r, db, dsn, schema, prefix):
    """Found by review (fixed; MariaDB only, PostgreSQL passed): row 1 exists; the app deletes
    it, then writes {"id": 1, "a": "not a number"} (a new row after the
    delete, whose value the column refuses). PostgreSQL's sink deletes the old
    row and dead-letters the new one. The MariaDB sink leaves the deleted row
    in place with its old values ("old"): merge.Merger._transaction builds
    ``deleting`` from ``staged`` only, so a record the stage refused
    (_stage -> refused) never gets its DELETE. Promise: the MariaDB sink has
    PostgreSQL's semantics (a write after a delete is a new row; a refused
    value is dead-lettered while the rest lands) -- here a row the
    application deleted survives (and with it any data the delete was meant
    to remove) until someone retries the dead letter. Fix: run the DELETE
    for refused records that carry ``again`` (items[i][3]) too, as PG does."""
    db.execute(f"CREATE TABLE {schema}.dr (id int PRIMARY KEY, a int, b text)")
    t = Table(f"{schema}.dr", partitions=1)
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": 1, "a": 1, "b": "old"}, {"id": 2, "a": 2, "b": "old"}])
    assert drain(r, dsn, prefix).exit_code == 0
    sw.delete(t, 1)
    sw.update(t, {"id": 1, "a": "not a number"})  # a new row after the delete, refused
    rep = drain(r, dsn, prefix)
    assert rep.exit_code == 1, rep.summary()
    assert set(dead_entries(r, t.keys(0, prefix))) == {"1"}
    got = db.execute(f"SELECT id, a, b FROM {schema}.dr ORDER BY id").fetchall()
    assert [tuple(x) for x in got] == [(2, 2, "old")]  # as PostgreSQL: the deleted row is gone


def test_review15c_delete_then_strict_unknown_key(r, db, dsn, schema, prefix):
    """Held: both sinks agree (--strict refuses before the delete)."""
    db.execute(f"CREATE TABLE {schema}.ds (id int PRIMARY KEY, a int, b text)")
    t = Table(f"{schema}.ds", partitions=1)
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": 1, "a": 1, "b": "old"}, {"id": 2, "a": 2, "b": "old"}])
    assert drain(r, dsn, prefix, strict=True).exit_code == 0
    sw.delete(t, 1)
    sw.update(t, {"id": 1, "a": 3, "zzz": 1})
    rep = drain(r, dsn, prefix, strict=True)
    assert rep.exit_code == 1, rep.summary()
    assert set(dead_entries(r, t.keys(0, prefix))) == {"1"}
    got = db.execute(f"SELECT id, a, b FROM {schema}.ds ORDER BY id").fetchall()
    assert len(got) == 2  # both sinks agree: the strict refusal happens before any delete
