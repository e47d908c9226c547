"""Review 15c: CLI paths with a mysql:// DSN."""

from __future__ import annotations

import json

from syncwd_fast import Syncwd, Table

from .helpers import cli, dead_entries


def test_review15c_dead_letter_retry_with_mysql_dsn(redis_url, r, prefix, mysql_db):
    dsn, conn = mysql_db
    conn.cursor().execute("CREATE TABLE rt (id INT PRIMARY KEY, a VARCHAR(3) NULL)")
    t = Table("rt", key="id", partitions=1)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": 1, "a": "toolong"}, {"id": 2, "a": "ok"}])
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--json")
    assert out.returncode == 1, out.stderr
    assert set(dead_entries(r, t.keys(0, prefix))) == {"1"}
    conn.cursor().execute("ALTER TABLE rt MODIFY a VARCHAR(10) NULL")
    out = cli("dead-letter", "retry", "--redis", redis_url, "--prefix", prefix, "--dsn", dsn, "--json")
    assert out.returncode == 0, (out.stdout, out.stderr)
    cur = conn.cursor()
    cur.execute("SELECT id, a FROM rt ORDER BY id")
    assert cur.fetchall() == ((1, "toolong"), (2, "ok"))
    assert dead_entries(r, t.keys(0, prefix)) == {}


def test_review15c_schedule_with_mysql_dsn(redis_url, r, prefix, mysql_db):
    dsn, conn = mysql_db
    conn.cursor().execute("CREATE TABLE sc (id INT PRIMARY KEY, a INT NULL)")
    t = Table("sc", key="id", partitions=2)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "a": i} for i in range(20)])
    out = cli(
        "schedule", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--every", "1s", "--max-runs", "2", "--json"
    )
    assert out.returncode == 0, (out.stdout, out.stderr)
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 2 and lines[0]["upserted"] == 20
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) FROM sc")
    assert cur.fetchone()[0] == 20
