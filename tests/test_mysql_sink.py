"""The built-in MariaDB/MySQL sink: the same semantics as PostgreSQL's,
each tested against a database of the test's own (conftest.mysql_db)."""

from __future__ import annotations

import datetime
import decimal
import sys

import orjson
import pytest

from syncwd_fast import ConfigurationError, FastDrainer, Syncwd, Table
from syncwd_fast.sinks import builtin_sink

from .helpers import cli, dead_of, last_json


def drain(r, m, prefix, **kw):
    return FastDrainer(r, m.dsn, prefix=prefix, **kw).drain()


def test_insert_update_delete_and_typing(r, m, prefix):
    m.sql(
        "CREATE TABLE progress (user_id BIGINT PRIMARY KEY, level INT NOT NULL, score BIGINT, name VARCHAR(64),"
        " seen_at DATETIME(6), paid DECIMAL(10,2), ok BOOLEAN, inventory JSON, note TEXT)"
    )
    t = Table("progress", key="user_id", partitions=3)
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"user_id": i, "level": 2, "score": i * 10, "name": f"p{i}"} for i in range(300)])
    sw.update(
        t,
        {
            "user_id": 5,
            "level": 3,
            "name": "ünï ✓ 🎲",
            "seen_at": "2026-11-28T01:02:03.5+05:30",
            "paid": decimal.Decimal("12.50"),
            "ok": True,
            "inventory": {"a": [1, {"b": None}], "n": 1.50},
            "note": "tab\tnew\nline \\N NULL",
        },
    )
    sw.delete(t, 9)
    report = drain(r, m, prefix)
    assert (report.upserted, report.deleted, report.dead_lettered, report.exit_code) == (299, 1, 0, 0)
    assert m.count("progress") == 299
    row = m.sql("SELECT * FROM progress WHERE user_id = 5")[0]
    assert row[:4] == (5, 3, None, "ünï ✓ 🎲")
    assert row[4] == datetime.datetime(2026, 11, 27, 19, 32, 3, 500000)  # turned to UTC
    assert row[5] == decimal.Decimal("12.50") and row[6] == 1
    assert orjson.loads(row[7]) == {"a": [1, {"b": None}], "n": 1.5} and row[8] == "tab\tnew\nline \\N NULL"
    # a second drain has nothing to do
    assert drain(r, m, prefix).upserted == 0


def test_a_missing_key_never_nulls_a_column_and_unknown_keys_are_ignored(r, m, prefix):
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, a INT NOT NULL, b TEXT, c TEXT DEFAULT 'dflt')")
    t = Table("p")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": 1, "a": 1, "b": "one"}, {"id": 2, "a": 2, "b": "two"}])
    drain(r, m, prefix)
    sw.update_many(t, [{"id": 1, "b": "uno", "zzz": 9}, {"id": 3, "b": "new row lacks a"}, {"id": 2, "a": 22}])
    report = drain(r, m, prefix)
    assert (report.upserted, report.dead_lettered, report.exit_code) == (2, 1, 1)
    assert m.rows("p") == ((1, 1, "uno", "dflt"), (2, 22, "two", "dflt"))
    assert "NOT NULL column(s) a" in dead_of(r, t, prefix)["3"]["error"]
    sw.update(t, {"id": 1, "a": 5, "unknown": True})
    strict = drain(r, m, prefix, strict=True)
    assert (strict.dead_lettered, strict.exit_code) == (1, 1)
    assert dead_of(r, t, prefix)["1"]["error"] == "not columns of p: unknown"


def test_bad_records_are_dead_lettered_with_the_servers_message_and_the_rest_lands(r, m, prefix):
    m.sql(
        "CREATE TABLE p (id INT PRIMARY KEY, score INT CHECK (score >= 0), name VARCHAR(8),"
        " at DATE, doc JSON, parent INT, FOREIGN KEY (parent) REFERENCES p (id))"
    )
    t = Table("p")
    sw = Syncwd(r, prefix=prefix)
    good = [{"id": i, "score": i, "name": f"n{i}"} for i in range(1, 1001)]
    bad = [
        {"id": 5000, "score": -1},
        {"id": 5001, "score": "lots"},
        {"id": 5002, "score": 2**40},
        {"id": 5003, "name": "far too long"},
        {"id": 5004, "at": "2026-02-30"},
        {"id": 5005, "parent": 999999},
    ]
    sw.update_many(t, good + bad)
    keys = t.keys(0, prefix)
    r.set(keys.value("5006"), b'{"id": 5006, "score": 1')  # not JSON
    r.sadd(keys.dirty, "5006")
    report = drain(r, m, prefix)
    assert (report.upserted, report.dead_lettered, report.exit_code) == (1000, 7, 1)
    assert m.count("p") == 1000
    dead = dead_of(r, t, prefix)
    assert "CONSTRAINT" in dead["5000"]["error"] and "failed" in dead["5000"]["error"]
    assert "Incorrect integer value: 'lots'" in dead["5001"]["error"]
    assert "Out of range value for column 'score'" in dead["5002"]["error"]
    assert "Data too long for column 'name'" in dead["5003"]["error"]
    assert "Incorrect date value" in dead["5004"]["error"]
    assert "foreign key constraint fails" in dead["5005"]["error"]
    assert dead["5006"]["error"].startswith("invalid JSON")
    assert orjson.loads(dead["5000"]["value"]) == {"id": 5000, "score": -1}


def test_the_version_column_keeps_older_writes_out(r, m, prefix):
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, v BIGINT, name TEXT)")
    t = Table("p", version_column="v")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": 1, "v": 10, "name": "ten"}, {"id": 2, "v": 10, "name": "ten"}])
    drain(r, m, prefix)
    sw.update_many(
        t, [{"id": 1, "v": 9, "name": "older"}, {"id": 2, "v": 10, "name": "equal wins"}, {"id": 3, "v": None}]
    )
    report = drain(r, m, prefix)
    assert (report.upserted, report.skipped) == (2, 1)
    assert m.rows("p") == ((1, 10, "ten"), (2, 10, "equal wins"), (3, None, None))


def test_delete_then_write_is_a_new_row(r, m, prefix):
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, a TEXT, b TEXT DEFAULT 'default')")
    t = Table("p")
    sw = Syncwd(r, prefix=prefix)
    sw.update(t, {"id": 1, "a": "old", "b": "old"})
    drain(r, m, prefix)
    sw.delete(t, 1)
    sw.update(t, {"id": 1, "a": "new"})  # before any drain saw the delete
    report = drain(r, m, prefix)
    assert report.exit_code == 0
    assert m.rows("p") == ((1, "new", "default"),)
    sw.update(t, {"id": 1, "a": "newer"})  # a plain update now
    drain(r, m, prefix)
    assert m.rows("p") == ((1, "newer", "default"),)


def test_another_unique_index_is_never_updated_through(r, m, prefix):
    """ON DUPLICATE KEY UPDATE would update the row another unique index
    matches; such tables update and insert apart, and the conflict is the
    record's dead letter."""
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, email VARCHAR(64) UNIQUE, name TEXT)")
    t = Table("p")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": 1, "email": "a@x", "name": "a"}, {"id": 2, "email": "b@x", "name": "b"}])
    drain(r, m, prefix)
    sw.update_many(t, [{"id": 3, "email": "a@x", "name": "steals a's email"}, {"id": 2, "name": "bee"}])
    report = drain(r, m, prefix)
    assert (report.upserted, report.dead_lettered) == (1, 1)
    assert m.rows("p") == ((1, "a@x", "a"), (2, "b@x", "bee"))
    assert "Duplicate entry" in dead_of(r, t, prefix)["3"]["error"]


def test_a_drainer_whose_lease_was_taken_over_cannot_commit(r, m, prefix, monkeypatch):
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, a INT)")
    t = Table("p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "a": i} for i in range(50)])
    from syncwd_fast.sinks.mysql import merge

    real = merge.Merger._stage

    def stage_then_lose_the_lease(self, *args):
        real(self, *args)
        r.set(t.keys(0, prefix).lease, "another-drainer", px=3000)

    monkeypatch.setattr(merge.Merger, "_stage", stage_then_lose_the_lease)
    report = drain(r, m, prefix, lease_seconds=1)
    assert report.exit_code == 3 and "lease lost" in report.aborted
    assert m.count("p") == 0  # rolled back
    monkeypatch.undo()
    r.delete(t.keys(0, prefix).lease)
    assert drain(r, m, prefix).upserted == 50


def test_cli_drains_a_mysql_dsn_and_says_what_is_wrong(redis_url, r, m, prefix):
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, a TEXT)")
    t = Table("p", partitions=2)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "a": str(i)} for i in range(100)])
    out = cli("drain", "--redis", redis_url, "--dsn", m.dsn, "--prefix", prefix, "--json")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["upserted"] == 100 and m.count("p") == 100
    for dsn, said in [
        (m.dsn.rsplit("/", 1)[0] + "/no_such_database_here", "Unknown database"),
        ("mysql://root@127.0.0.1:3306/", "names its database"),
        ("mysql://root@127.0.0.1:3306/x?bogus=1", "unknown MySQL DSN parameter 'bogus'"),
    ]:
        out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--json")
        assert out.returncode == 2, (dsn, out.stderr)
        assert said in last_json(out.stdout)["error"], dsn


def test_a_mysql_dsn_without_the_driver_says_what_to_install(monkeypatch):
    for name in [n for n in sys.modules if n.startswith("syncwd_fast.sinks.mysql")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pymysql", None)  # as if not installed
    with pytest.raises(ConfigurationError, match=r"pip install 'syncwd-fast\[mysql\]'"):
        builtin_sink("mysql://root@127.0.0.1/test")
