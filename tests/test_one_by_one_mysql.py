"""MariaDB's one by one (sinks/mysql/one_by_one.py): records no screen can
judge (a trigger's SIGNAL) found one record at a time inside one anonymous
block per chunk, once both halves of a part fail: the dead letters and
counts halving gives, in a few statements per batch."""

from __future__ import annotations

from typing import Any

import pymysql
import pytest

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.sinks.mysql import merge as mysql_merge
from syncwd_fast.sinks.mysql.connection import connect
from syncwd_fast.sinks.mysql.merge import Merger
from syncwd_fast.sinks.mysql.render import Decoder
from syncwd_fast.sinks.mysql.schema import load_schema

from .helpers import Statements, dead_of

N = 1000


def refusing(m: Any, table: str, condition: str) -> None:
    """BEFORE INSERT and UPDATE triggers on ``table`` refusing rows where ``condition``."""
    for event in ("INSERT", "UPDATE"):
        m.sql(
            f"CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON {table} FOR EACH ROW"
            f" IF {condition} THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'refused'; END IF"
        )


def drain(r: Any, m: Any, prefix: str) -> Any:
    return FastDrainer(r, m.dsn, prefix=prefix, batch=5000).drain()


def table(m: Any, name: str = "p", **kw: Any) -> Table:
    return Table(f"{m.dsn.rsplit('/', 1)[1]}.{name}", **kw)


@pytest.mark.parametrize("one_by_one", [True, False], ids=["one_by_one", "halving"])
def test_many_records_a_trigger_refuses(r, m, prefix, monkeypatch, one_by_one):
    monkeypatch.setattr(mysql_merge._Run, "ONE_BY_ONE", one_by_one)
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, v INT NOT NULL)")
    refusing(m, "p", "NEW.v < 0")
    t = table(m)
    bad = {i for i in range(N) if i % 5 == 2}
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": -1 if i in bad else i} for i in range(N)])
    statements = Statements(monkeypatch)
    report = drain(r, m, prefix)
    dead = dead_of(r, t, prefix)
    assert set(dead) == {str(i) for i in bad}
    assert all(d["error"] == "refused [MySQL error 1644]" for d in dead.values())
    assert report.upserted == N - len(bad) and report.exit_code == 1
    assert m.sql("SELECT count(*), sum(v <> id) FROM p") == ((N - len(bad), 0),)
    if one_by_one:
        assert statements.count < 80, statements.count  # halving: thousands


def test_records_the_version_guard_keeps_out_are_counted_skipped(r, m, prefix):
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, v INT NOT NULL, version INT)")
    m.sql("INSERT INTO p SELECT seq, 0, 100 FROM seq_0_to_99")
    refusing(m, "p", "NEW.v < 0")
    t = table(m, version_column="version")
    records = [
        {"id": i, "v": -1 if i % 5 == 1 else i, "version": 50 if i % 2 == 0 and i < 100 else 200} for i in range(200)
    ]
    Syncwd(r, prefix=prefix).update_many(t, records)
    report = drain(r, m, prefix)
    # The BEFORE INSERT trigger sees every proposed row, kept out or not.
    bad = {i for i in range(200) if i % 5 == 1}
    kept_out = {i for i in range(100) if i % 2 == 0} - bad
    assert set(dead_of(r, t, prefix)) == {str(i) for i in bad}
    assert report.skipped == len(kept_out), report.to_dict()
    assert report.upserted == 200 - len(kept_out) - len(bad), report.to_dict()
    got = dict(m.sql("SELECT id, v FROM p"))
    assert all(got[i] == 0 for i in kept_out)
    assert all(got[i] == i for i in range(200) if i not in kept_out and i not in bad)


def test_records_of_key_columns_only_whose_row_exists_are_counted_skipped(r, m, prefix):
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, v INT NOT NULL DEFAULT 0)")
    m.sql("INSERT INTO p SELECT seq, 7 FROM seq_0_to_98_step_2")
    refusing(m, "p", "NEW.id % 5 = 3")
    t = table(m)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i} for i in range(100)])
    report = drain(r, m, prefix)
    existing = set(range(0, 100, 2))
    # ON DUPLICATE KEY UPDATE: the BEFORE INSERT trigger sees every proposed row.
    refused = {i for i in range(100) if i % 5 == 3}
    assert set(dead_of(r, t, prefix)) == {str(i) for i in refused}
    assert report.skipped == len(existing - refused), report.to_dict()
    assert report.upserted == 50 - len(refused - existing), report.to_dict()


def test_a_lock_wait_inside_the_block_is_a_fault_not_a_bad_record(m):
    """A lock wait timeout is no record's fault: the block raises it again,
    the batch fails whole, and no record is dead-lettered for it."""
    m.sql("CREATE TABLE parent (id INT PRIMARY KEY)")
    m.sql("INSERT INTO parent SELECT seq FROM seq_0_to_9")
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, v INT NOT NULL, ref INT, FOREIGN KEY (ref) REFERENCES parent (id))")
    refusing(m, "p", "NEW.v < 0")
    conn = connect(m.dsn, lock_timeout_s=1)
    holder = connect(m.dsn)
    try:
        schema = load_schema(conn, table(m), m.dsn.rsplit("/", 1)[1])
        merger = Merger(conn, schema, lock_wait_s=5)
        with holder.cursor() as cur:  # the key's check of parent 7 waits for this lock
            cur.execute("SELECT * FROM parent WHERE id = 7 FOR UPDATE")
        decoded = Decoder(schema).decode(
            [str(i) for i in range(100)],
            [b'{"id": %d, "v": %d, "ref": %d}' % (i, -1 if i % 4 == 1 else i, i % 10) for i in range(100)],
            {},
        )
        with pytest.raises(pymysql.err.OperationalError) as raised:
            merger.merge(decoded, "lock", lambda: True, lambda *_: None, lambda _: set())
        assert raised.value.args[0] == 1205
    finally:
        holder.rollback()
        holder.close()
        conn.close()
    assert m.sql("SELECT count(*) FROM p") == ((0,),)


def test_where_no_block_runs_halving_finds_them(r, m, prefix, monkeypatch):
    """MySQL has no anonymous blocks: a block the server refuses to parse
    leaves the finding to halving, with the same dead letters."""
    monkeypatch.setattr(mysql_merge, "block", lambda *args: "BEGIN NOT ATOMIC SELEKT 1; END")
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, v INT NOT NULL)")
    refusing(m, "p", "NEW.v < 0")
    t = table(m)
    bad = {i for i in range(200) if i % 5 == 2}
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": -1 if i in bad else i} for i in range(200)])
    report = drain(r, m, prefix)
    assert set(dead_of(r, t, prefix)) == {str(i) for i in bad}
    assert report.upserted == 200 - len(bad)
