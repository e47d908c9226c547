"""Leases: a dead drainer's partitions are taken over in the same run, a live
one's are busy, and a merge that waits longer than the lease keeps it (the
heartbeat)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import psycopg
import pytest

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.status import table_status

from .helpers import count, drain_command, last_json, wait_for
from .targets import db, dsn, schema, target  # noqa: F401  (each test against each built-in sink)


@pytest.fixture
def t(db, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL)")
    return Table(f"{schema}.p", partitions=3)


def run_json(command, timeout=120):
    started = time.monotonic()
    out = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=timeout)
    return out, last_json(out.stdout) if out.stdout.strip() else None, time.monotonic() - started


def test_kill_9_then_an_immediate_second_drain_takes_over_and_lands_everything(r, db, redis_url, dsn, prefix, t):
    n = 300_000
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i} for i in range(n)])
    lease = "3"
    proc = subprocess.Popen(
        drain_command(redis_url, dsn, prefix, "--batch", "500", "--lease-seconds", lease, "--workers", "3"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: count(db, t.name) >= 5000), "the drain never started merging"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert any(r.exists(t.keys(p, prefix).lease) for p in range(3)), "the dead drainer's leases should be left"
    # At once, while the dead drainer's leases are still there.
    out, report, seconds = run_json(drain_command(redis_url, dsn, prefix, "--lease-seconds", lease, "--workers", "3"))
    assert out.returncode == 0, out.stderr
    assert report["tables"][t.name]["busy"] == []
    assert "taking the partition over" in out.stderr
    assert count(db, t.name) == n
    status = table_status(r, prefix)[t.name]
    assert (status["dirty"], status["in_run"], status["inflight"], status["active_runs"]) == (0, 0, 0, {})


@pytest.mark.postgres_only
def test_a_live_drainer_is_busy_and_skip_busy_does_not_wait(r, db, redis_url, dsn, prefix, t):
    """Drainer A is stuck in a merge on a row an application has locked; its
    heartbeat keeps the lease, so B reports that partition busy (in about a
    heartbeat) and drains the others; A lands its batch once the lock goes."""
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "v": i} for i in range(3000)])
    locked = 0
    number = t.partition(str(locked))
    db.execute(f"INSERT INTO {t.name} VALUES ({locked}, -1)")
    with psycopg.connect(dsn) as app:
        app.execute(f"SELECT * FROM {t.name} WHERE id = {locked} FOR UPDATE")  # held until commit
        started = time.monotonic()
        a = subprocess.Popen(
            drain_command(redis_url, dsn, prefix, "--lease-seconds", "2", "--json", "--table", t.name),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert wait_for(
                lambda: (
                    db.execute(  # autocommit: pg_stat_activity is read once per transaction
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND application_name = 'syncwd-fast'"
                    ).fetchone()[0]
                    > 0
                ),
                timeout=30,
            ), "drainer A never blocked on the application's lock"
            holder = table_status(r, prefix)[t.name]["leases"][number]
            assert f"pid {a.pid} since " in holder
            out, report, seconds = run_json(drain_command(redis_url, dsn, prefix, "--lease-seconds", "2"))
            assert out.returncode == 0, out.stderr
            assert report["tables"][t.name]["busy"] == [number]
            assert f"busy, held by {holder}" in out.stderr
            assert seconds < 20
            out, report, seconds = run_json(drain_command(redis_url, dsn, prefix, "--skip-busy"))
            assert out.returncode == 0 and report["tables"][t.name]["busy"] == [number]
            time.sleep(max(0.0, started + 3 * 2 - time.monotonic()))
            assert a.poll() is None, "drainer A should still be waiting for the lock"
            app.commit()  # the application lets go after 3 leases
            stdout, stderr = a.communicate(timeout=60)
        finally:
            if a.poll() is None:
                a.kill()
    assert a.returncode == 0, stderr
    assert "lease lost" not in stderr
    assert db.execute(f"SELECT v FROM {t.name} WHERE id = {locked}").fetchone()[0] == locked
    assert count(db, t.name) == 3000


@pytest.mark.postgres_only
def test_a_merge_waiting_3x_the_lease_on_an_application_lock_keeps_its_lease(r, db, dsn, prefix, t):
    t = Table(t.name, partitions=1)
    sw = Syncwd(r, prefix=prefix)
    db.execute(f"INSERT INTO {t.name} VALUES (1, 0)")
    sw.update_many(t, [{"id": i, "v": 10 + i} for i in range(500)])
    lease = 1.0
    with psycopg.connect(dsn) as app:
        app.execute(f"SELECT * FROM {t.name} WHERE id = 1 FOR UPDATE")
        release = threading.Timer(3 * lease, app.commit)
        release.start()
        started = time.monotonic()
        report = FastDrainer(r, dsn, prefix=prefix, lease_seconds=lease).drain()
        waited = time.monotonic() - started
        release.join()
    assert report.aborted is None and report.exit_code == 0, report.summary()
    assert waited >= 3 * lease  # it did wait for the application
    assert report.upserted == 500
    assert db.execute(f"SELECT v FROM {t.name} WHERE id = 1").fetchone()[0] == 11


def test_a_lease_with_no_holder_renewing_it_is_taken_over(r, db, dsn, prefix, t):
    """A lease left by a drainer that died before it wrote anything else."""
    t = Table(t.name, partitions=1)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i} for i in range(100)])
    r.set(t.keys(0, prefix).lease, "dead-drainer", px=1500)
    skipped = FastDrainer(r, dsn, prefix=prefix, skip_busy=True).drain()
    assert skipped.tables[t.name].busy == [0] and skipped.upserted == 0
    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert report.tables[t.name].busy == [] and report.upserted == 100


def test_a_lease_renewed_by_its_holder_is_busy(r, db, dsn, prefix, t):
    t = Table(t.name, partitions=1)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i} for i in range(100)])
    key = t.keys(0, prefix).lease
    r.set(key, "live-drainer", px=3000)
    stop = threading.Event()

    def heartbeat():
        while not stop.wait(0.3):
            r.pexpire(key, 3000)

    beat = threading.Thread(target=heartbeat)
    beat.start()
    try:
        report = FastDrainer(r, dsn, prefix=prefix).drain()
    finally:
        stop.set()
        beat.join()
    assert report.tables[t.name].busy == [0] and report.upserted == 0 and report.exit_code == 0
