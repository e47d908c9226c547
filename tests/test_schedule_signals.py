"""syncwd-fast schedule in a real subprocess: real cron timing (a seconds
field), SIGTERM while it waits, SIGTERM in the middle of a drain."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import psycopg
import pytest

from syncwd_fast import FastDrainer, Syncwd, Table, status

from .helpers import count, rows, wait_for


@pytest.fixture
def t(db: Any, schema: str) -> Table:
    db.execute(f"CREATE TABLE {schema}.s (id int PRIMARY KEY, v int NOT NULL)")
    return Table(f"{schema}.s")


def start(redis_url: str, dsn: str, prefix: str, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "syncwd_fast", "schedule", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix]
    return subprocess.Popen([*command, *extra, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def stderr_until(proc: subprocess.Popen[str], text: str) -> list[str]:
    """stderr's lines up to the first holding ``text``."""
    assert proc.stderr is not None
    lines: list[str] = []
    while not lines or text not in lines[-1]:
        line = proc.stderr.readline()
        assert line, f"the schedule ended before saying {text!r}: {lines}"
        lines.append(line)
    return lines


def due_at(line: str) -> datetime:
    """The time of a "next drain at YYYY-MM-DD HH:MM:SS (in ...)" line."""
    return datetime.strptime(line.split("next drain at ", 1)[1][:19], "%Y-%m-%d %H:%M:%S")


def test_a_cron_with_seconds_drains_at_its_times(r, db, redis_url, dsn, prefix, t, procs):
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i} for i in range(50)])
    proc = start(redis_url, dsn, prefix, "--cron", "* * * * * */2", "--max-runs", "2")
    procs.append(proc)
    first = due_at(stderr_until(proc, "next drain at ")[-1])
    assert first.second % 2 == 0  # a cron time: even seconds
    assert proc.stdout is not None
    assert orjson.loads(proc.stdout.readline())["upserted"] == 50  # drained at that time
    Syncwd(r, prefix=prefix).update(t, {"id": 50, "v": 50})
    second = due_at(stderr_until(proc, "next drain at ")[-1])
    assert second.second % 2 == 0 and second > first
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert orjson.loads(out.splitlines()[-1])["upserted"] == 1 and count(db, t.name) == 51


def test_sigterm_while_waiting_for_a_cron_time_exits_0(r, db, redis_url, dsn, prefix, t, procs):
    Syncwd(r, prefix=prefix).update(t, {"id": 1, "v": 1})
    proc = start(redis_url, dsn, prefix, "--cron", "0 0 1 1 *")  # next New Year's midnight
    procs.append(proc)
    said = stderr_until(proc, "next drain at ")[-1]
    assert due_at(said) == datetime(datetime.now().year + 1, 1, 1), said
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "SIGTERM: no drain under way; the schedule ends" in err and "batch in flight" not in err
    assert out == "" and count(db, t.name) == 0  # no drain ran: its time had not come


def test_sigterm_mid_drain_finishes_the_batch_in_flight_and_the_next_drain_takes_the_rest(
    r, db, redis_url, dsn, prefix, t, procs
):
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i * 2} for i in range(1000)])
    waiting = f"SELECT count(*) FROM pg_locks WHERE relation = '{t.name}'::regclass AND NOT granted"
    with psycopg.connect(dsn) as app:
        # SHARE blocks writes, not reads: the drain reads the table's columns,
        # then its first batch waits to be written.
        app.execute(f"LOCK TABLE {t.name} IN SHARE MODE")
        proc = start(redis_url, dsn, prefix, "--every", "1h", "--batch", "100")
        procs.append(proc)
        assert wait_for(lambda: db.execute(waiting).fetchone()[0] > 0, timeout=120), "no batch waited"
        proc.send_signal(signal.SIGTERM)
        stderr_until(proc, "SIGTERM: stopping after the batch in flight")
    # The lock is gone (the transaction ended): the batch lands, the drain stops.
    out, err = proc.communicate(timeout=60)
    report = orjson.loads(out.splitlines()[-1])
    assert proc.returncode == 4 and report["interrupted"] == "SIGTERM", err
    landed = count(db, t.name)
    assert 0 < landed < 1000 and report["upserted"] == landed  # that batch, no more
    assert landed % 100 == 0, landed  # whole batches
    state = status(r, prefix=prefix)["tables"][t.name]
    # The landed batch was acked: what Redis still holds to drain is the rest
    # (read ahead of the signal, some are in flight: the next drain adopts them).
    assert state["dirty"] + state["in_run"] + state["inflight"] == 1000 - landed, state

    rest = FastDrainer(r, dsn, prefix=prefix).drain()
    assert rest.exit_code == 0 and rest.upserted == 1000 - landed
    assert rows(db, t.name, "id") == [(i, i * 2) for i in range(1000)]  # nothing lost, nothing twice
