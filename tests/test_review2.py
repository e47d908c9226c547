"""Adversarial review of the one-pass read of the run set (no SREM): each test
is a defect found, against real servers."""

from __future__ import annotations

import pytest

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.deadletter import purge_dead

from .helpers import dead_entries, rows

N = 600  # ints past 512: the run set is a hash table, read in several pops


@pytest.fixture
def fk(db, schema):
    """Parents 0..N-1, each with a child row: deleting a parent fails (FK)."""
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int, w int)")
    db.execute(f"CREATE TABLE {schema}.c (pid int REFERENCES {schema}.p (id))")
    db.execute(f"INSERT INTO {schema}.p SELECT i, i, 7 FROM generate_series(0, {N - 1}) i")
    db.execute(f"INSERT INTO {schema}.c SELECT i FROM generate_series(0, {N - 1}) i")
    return Table(f"{schema}.p")


def test_a_dead_letter_purged_mid_pass_is_forgotten_whole(r, db, dsn, prefix, fk):
    """A delete refused by PostgreSQL (a child row references it) is
    dead-lettered; the drain stops mid-run (or is still reading the run), and
    the operator purges the dead letter: the delete is dropped. The id is
    still in the run set (ids stay there until the run ends), so purge takes
    it for a newer value not read yet: the tombstone mark stays, and the
    application's next update of the row is made a new row after a delete:
    the drain deletes the row again (refused again: a false dead letter) and
    the purged tombstone's value never gets a TTL."""
    sw = Syncwd(r, prefix=prefix)
    for i in range(N):
        sw.delete(fk, i)
    keys = fk.keys(0, prefix)
    drainer = FastDrainer(r, dsn, prefix=prefix, batch=100)
    drainer.options.on_batch = lambda *_: drainer.request_stop("test")  # stop after the first batch
    report = drainer.drain()
    assert report.interrupted and 0 < report.dead_lettered < N
    assert r.hget(keys.meta, "cursor") != b"done"  # the drain stopped mid-pass
    x = sorted(dead_entries(r, keys))[0]
    assert purge_dead(r, prefix, ids=[x]) == 1  # the delete of x is dropped
    ttl = r.ttl(keys.value(x))

    report = FastDrainer(r, dsn, prefix=prefix).drain()  # the rest of the run: refused deletes
    assert x not in dead_entries(r, keys)
    sw.update(fk, {"id": int(x), "v": -1})  # the application updates the row it still has
    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert x not in dead_entries(r, keys), "an update of a purged delete was made a delete again"
    assert rows(db, fk.name, "id")[int(x)] == (int(x), -1, 7)
    assert ttl > 0, "the purged value got no TTL"
