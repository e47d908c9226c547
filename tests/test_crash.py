"""A drain killed with SIGKILL mid-run, and writes racing a drain: the next
drain ends with every record correct, in PostgreSQL and in MariaDB."""

import os
import signal
import subprocess
import threading

import pytest

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.status import table_status

from .helpers import count, drain_command, wait_for
from .targets import db, dsn, schema, target  # noqa: F401  (each test against each built-in sink)


@pytest.fixture
def t(db, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL, note text)")
    return Table(f"{schema}.p", partitions=2)


def test_kill_9_mid_run_then_a_second_drain_lands_everything(r, db, redis_url, dsn, prefix, t):
    n = 100_000
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "v": i, "note": "first"} for i in range(n)])
    proc = subprocess.Popen(
        drain_command(redis_url, dsn, prefix, "--batch", "200", "--lease-seconds", "1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: count(db, t.name) >= 5000), "the drain never started merging"
        assert proc.poll() is None, "the drain finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    landed = count(db, t.name)
    assert 5000 <= landed < n
    status = table_status(r, prefix)[t.name]
    # Not yet landed = still dirty (a partition not reached), in its run, or in flight.
    assert status["dirty"] + status["in_run"] + status["inflight"] >= n - landed
    assert status["active_runs"], "the killed run should be left for adoption"

    # Updates made after the crash must win over what the dead drain had popped.
    sw.update_many(t, [{"id": i, "v": -i, "note": "second"} for i in range(0, n, 10)])
    assert wait_for(lambda: not any(r.exists(t.keys(p, prefix).lease) for p in range(2)), timeout=10)
    report = FastDrainer(r, dsn, prefix=prefix, batch=5000).drain()
    assert report.exit_code == 0 and not any(tr.busy for tr in report.tables.values())
    assert count(db, t.name) == n
    wrong = db.execute(
        f"SELECT count(*) FROM {t.name} WHERE (id % 10 = 0 AND (v <> -id OR note <> 'second'))"
        f" OR (id % 10 <> 0 AND (v <> id OR note <> 'first'))"
    ).fetchone()[0]
    assert wrong == 0
    status = table_status(r, prefix)[t.name]
    assert (status["dirty"], status["in_run"], status["inflight"], status["dead"], status["active_runs"]) == (
        0,
        0,
        0,
        0,
        {},
    )


def test_writes_during_a_drain_land_in_the_next_one(r, db, dsn, prefix, t):
    t = Table(t.name, partitions=1)  # one snapshot, taken before the writes below
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "v": 1} for i in range(40_000)])
    result = {}
    drainer = threading.Thread(
        target=lambda: result.update(report=FastDrainer(r, dsn, prefix=prefix, batch=200).drain())
    )
    drainer.start()
    assert wait_for(lambda: count(db, t.name) > 0)
    # The snapshot is taken: these writes belong to the next run.
    written_during = list(range(0, 40_000, 7)) + list(range(100_000, 101_000))
    sw.update_many(t, [{"id": i, "v": 2} for i in written_during])
    drainer.join(120)
    assert result["report"].upserted == 40_000
    dirty = {int(x) for x in r.smembers(t.keys(0, prefix).dirty)}
    assert dirty == set(written_during)
    second = FastDrainer(r, dsn, prefix=prefix).drain()
    assert second.upserted == len(written_during)
    expected = {i: 1 for i in range(40_000)} | {i: 2 for i in written_during}
    assert dict(db.execute(f"SELECT id, v FROM {t.name}").fetchall()) == expected


def test_a_writer_thread_racing_drains_ends_with_the_last_values(r, db, dsn, prefix, t):
    sw = Syncwd(r, prefix=prefix)
    latest = {}
    stop = threading.Event()

    def write():
        version = 0
        while not stop.is_set():
            version += 1
            rows = [{"id": (version * 131 + j) % 3000, "v": version} for j in range(200)]
            sw.update_many(t, rows)
            latest.update({row["id"]: version for row in rows})

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(5):
            FastDrainer(r, dsn, prefix=prefix, batch=300).drain()
    finally:
        stop.set()
        writer.join()
    FastDrainer(r, dsn, prefix=prefix).drain()
    assert dict(db.execute(f"SELECT id, v FROM {t.name}").fetchall()) == latest
