"""A stalled drainer (SIGSTOP) whose lease expires while it holds a popped
batch: another drainer takes the partition over, and when the first wakes up
(SIGCONT) it never writes its older values over the newer ones."""

import os
import signal
import subprocess

import orjson
import pytest

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.status import table_status

from .helpers import count, drain_command, wait_for

N = 20_000


@pytest.fixture
def t(db, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL)")
    return Table(f"{schema}.p")  # one partition: the two drainers want the same one


@pytest.mark.parametrize("terminate_sessions", [False, True], ids=["sessions-alive", "sessions-terminated"])
def test_a_stalled_drainer_never_overwrites_newer_values(r, db, redis_url, dsn, prefix, t, terminate_sessions):
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "v": 1} for i in range(N)])
    app = f"stalled_{prefix}"
    with subprocess.Popen(
        drain_command(
            redis_url,
            f"{dsn} application_name={app}",
            prefix,
            "--batch",
            "50",
            "--lease-seconds",
            "1",
            "--retries",
            "2",
            "--json",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as stalled:
        try:
            assert wait_for(lambda: count(db, t.name) >= 500), "the first drainer never merged"
            os.kill(stalled.pid, signal.SIGSTOP)
            assert stalled.poll() is None and count(db, t.name) < N, "it finished before it could be stalled"
            # Newer values for every record while it sleeps with a popped batch in hand.
            sw.update_many(t, [{"id": i, "v": 2} for i in range(N)])
            if terminate_sessions:
                db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (app,))
            assert wait_for(lambda: not r.exists(t.keys(0, prefix).lease), timeout=10), "the lease never expired"

            report = FastDrainer(r, dsn, prefix=prefix, lease_seconds=30).drain()
            assert report.exit_code == 0 and not report.tables[t.name].busy
            assert db.execute(f"SELECT count(*), min(v), max(v) FROM {t.name}").fetchone() == (N, 2, 2)
        finally:
            os.kill(stalled.pid, signal.SIGCONT)
        out, err = stalled.communicate(timeout=120)

    # It woke up holding v=1 values: they must not have landed.
    assert db.execute(f"SELECT count(*), min(v), max(v) FROM {t.name}").fetchone() == (N, 2, 2)
    if stalled.returncode == 3:
        assert "lease" in orjson.loads(out.strip().splitlines()[-1])["aborted"]
    else:  # its session died and it retried from scratch: nothing old was left to merge
        assert stalled.returncode == 0 and "retry" in err, (stalled.returncode, out, err)
    status = table_status(r, prefix)[t.name]
    assert (status["dirty"], status["in_run"], status["inflight"]) == (0, 0, 0)
