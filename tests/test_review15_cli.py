"""Review 15: the CLI with mysql:// DSNs: wrong credentials, unknown host,
signals mid-drain."""

from __future__ import annotations

import signal
import subprocess

from syncwd_fast import Syncwd, Table

from .helpers import cli, drain_command, last_json, wait_for


def test_review15_cli_mysql_wrong_password_unknown_host(redis_url, r, prefix, mysql_db):
    dsn, conn = mysql_db
    t = Table("p")
    conn.cursor().execute("CREATE TABLE p (id INT PRIMARY KEY, a TEXT)")
    Syncwd(r, prefix=prefix).update(t, {"id": 1, "a": "x"})
    db = dsn.rsplit("/", 1)[1]
    bad = f"mysql://nosuchuser:S3cretPW@127.0.0.1:3306/{db}"
    out = cli("drain", "--redis", redis_url, "--dsn", bad, "--prefix", prefix, "--json", timeout=60)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "S3cretPW" not in out.stdout + out.stderr
    assert "Access denied" in last_json(out.stdout)["error"]
    host = f"mysql://root:S3cretPW@no-such-host.invalid:3306/{db}?connect_timeout=2"
    out = cli("drain", "--redis", redis_url, "--dsn", host, "--prefix", prefix, "--json", "--retries", "1", timeout=60)
    assert out.returncode in (2, 3), (out.stdout, out.stderr)
    assert "S3cretPW" not in out.stdout + out.stderr
    port = f"mysql://root:S3cretPW@127.0.0.1:1/{db}?connect_timeout=2"
    out = cli("drain", "--redis", redis_url, "--dsn", port, "--prefix", prefix, "--json", "--retries", "1", timeout=60)
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert "S3cretPW" not in out.stdout + out.stderr


def test_review15_sigterm_mid_drain_mysql_exit_4_and_resumable(redis_url, r, prefix, mysql_db):
    dsn, conn = mysql_db
    conn.cursor().execute("CREATE TABLE p (id INT PRIMARY KEY, a TEXT)")
    t = Table("p", partitions=2)
    n = 60_000
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "a": "x" * 50} for i in range(n)])
    proc = subprocess.Popen(
        [*drain_command(redis_url, dsn, prefix, "--batch", "500"), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def some():
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM p")
        return cur.fetchone()[0] > 1000

    assert wait_for(some, timeout=30)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, (out, err)
    for k in range(t.partitions):
        assert r.get(t.keys(k, prefix).lease) is None
    again = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--json", timeout=120)
    assert again.returncode == 0, again.stderr
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) FROM p")
    assert cur.fetchone()[0] == n
