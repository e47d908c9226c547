"""A lease's holder that provably died on this machine is replaced at once
(holder.py): no wait for the lease to expire after a kill -9; anywhere else
the lease runs out as before; a hand-off between two live drainers logs no
warning."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from syncwd_fast import FastDrainer, Syncwd, Table, holder, scripts

from .helpers import cli, count, drain_command, last_json, wait_for


def test_this_process_is_alive_a_finished_one_dead_and_another_machine_unknown() -> None:
    me = holder.identity()
    assert holder.is_dead(holder.encoded(me)) is False
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    ident = dict(me, pid=child.pid, start=holder.start_ticks(child.pid))
    assert holder.is_dead(holder.encoded(ident)) is False
    child.kill()
    time.sleep(0.2)
    assert holder.is_dead(holder.encoded(ident)) is True  # a zombie until reaped: ended all the same
    child.wait()
    assert holder.is_dead(holder.encoded(ident)) is True
    assert holder.is_dead(holder.encoded(dict(me, start=me["start"] + 1))) is True  # its pid, reused by another
    assert holder.is_dead(holder.encoded(dict(me, boot="another-boot"))) is None
    assert holder.is_dead(holder.encoded(dict(me, pidns=me["pidns"] + 1))) is None
    assert holder.is_dead(None) is None and holder.is_dead(b"not json") is None and holder.is_dead(b"{}") is None


def test_a_drainer_killed_with_sigkill_is_replaced_at_once(
    r: Any, db: Any, redis_url: str, dsn: str, prefix: str, schema: str
) -> None:
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL)")
    t = Table(f"{schema}.p", partitions=2)
    n = 200_000
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i} for i in range(n)])
    proc = subprocess.Popen(
        drain_command(redis_url, dsn, prefix, "--batch", "500", "--workers", "2"),  # the default lease, 30 s
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
    assert all(r.exists(t.keys(p, prefix).lease) for p in range(2))
    out = cli("status", "--redis", redis_url, "--prefix", prefix, "--json")
    assert last_json(out.stdout)["tables"][t.name]["dead_holders"] == [0, 1]
    assert "no longer running" in cli("status", "--redis", redis_url, "--prefix", prefix).stdout
    started = time.monotonic()
    out = subprocess.run(
        [*drain_command(redis_url, dsn, prefix, "--workers", "2"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = last_json(out.stdout)
    assert out.returncode == 0, out.stderr
    assert report["tables"][t.name]["busy"] == [] and count(db, t.name) == n
    assert "is no longer running on this machine; taking the partition over at once" in out.stderr
    assert time.monotonic() - started < 25  # not the 30 s the dead drainer's leases had left


def test_a_hand_off_between_live_drainers_is_no_warning(
    r: Any, db: Any, dsn: str, prefix: str, schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    db.execute(f"CREATE TABLE {schema}.h (id int PRIMARY KEY)")
    t = Table(f"{schema}.h")
    Syncwd(r, prefix=prefix).update(t, {"id": 1})
    keys = t.keys(0, prefix)
    me = holder.identity()  # a live holder: this process
    assert scripts.lease(r, keys, "acquire", "other", 20_000, holder.text(me), holder.encoded(me))
    releaser = threading.Timer(0.5, lambda: scripts.lease(r, keys, "release", "other"))
    releaser.start()
    # On the package's logger itself: an in-process CLI run earlier stops it propagating.
    package_log = logging.getLogger("syncwd_fast")
    package_log.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.INFO)
    level, package_log.level = package_log.level, logging.INFO
    try:
        report = FastDrainer(r, dsn, prefix=prefix).drain()
    finally:
        releaser.cancel()
        package_log.removeHandler(caplog.handler)
        package_log.setLevel(level)
    assert report.upserted == 1
    messages = [(rec.levelno, rec.getMessage()) for rec in caplog.records if rec.name == "syncwd_fast"]
    assert any("waiting up to" in m for _, m in messages)  # said at once what it waits for
    assert any("the drainer before this one finished" in m for _, m in messages)
    assert not [m for level, m in messages if level >= logging.WARNING], messages
