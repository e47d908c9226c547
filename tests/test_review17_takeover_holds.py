"""Review of 9280aa7: cases that held (kept as checks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from syncwd_fast import FastDrainer, Syncwd, Table, holder, scripts


def _ident(pid: int) -> dict[str, Any]:
    return dict(holder.identity(), pid=pid, start=holder.start_ticks(pid))


def test_a_stopped_holder_is_waited_for_not_taken_over_at_once(
    r: Any, db: Any, dsn: str, prefix: str, schema: str
) -> None:
    db.execute(f"CREATE TABLE {schema}.st (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.st")
    Syncwd(r, prefix=prefix).update(t, {"id": 1, "v": 1})
    keys = t.keys(0, prefix)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.2)
        ident = _ident(child.pid)
        os.kill(child.pid, signal.SIGSTOP)
        assert scripts.lease(r, keys, "acquire", "stopped", 1500, holder.text(ident), holder.encoded(ident))
        started = time.monotonic()
        report = FastDrainer(r, dsn, prefix=prefix, lease_seconds=3).drain()
        took = time.monotonic() - started
        assert report.upserted == 1 and report.tables[t.name].busy == []
        assert took >= 1.2, took  # waited for the lease to run out
    finally:
        child.kill()
        child.wait()


def test_two_drainers_racing_for_a_dead_holder(r: Any, db: Any, dsn: str, prefix: str, schema: str) -> None:
    db.execute(f"CREATE TABLE {schema}.ra (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.ra", partitions=4)
    n = 3000
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i} for i in range(n)])
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    time.sleep(0.2)
    ident = dict(holder.identity(), pid=child.pid, start=holder.start_ticks(child.pid) or 1)
    child.wait()
    for p in range(4):
        assert scripts.lease(r, t.keys(p, prefix), "acquire", f"dead{p}", 30_000, "x", holder.encoded(ident))
    reports: list[Any] = []
    barrier = threading.Barrier(3)

    def go() -> None:
        barrier.wait()
        reports.append(FastDrainer(r, dsn, prefix=prefix, workers=2, batch=100).drain())

    threads = [threading.Thread(target=go) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert len(reports) == 3
    assert db.execute(f"SELECT count(*) FROM {schema}.ra").fetchone()[0] == n
    assert sum(rep.upserted for rep in reports) == n
    for p in range(4):
        assert r.get(t.keys(p, prefix).lease) is None
        assert not r.scard(t.keys(p, prefix).dirty)
