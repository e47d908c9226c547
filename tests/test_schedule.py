"""syncwd-fast schedule: repeated drains at an interval or on a cron schedule."""

import signal
import subprocess
import sys
import time

import orjson
import pytest

from syncwd_fast import Syncwd, Table
from syncwd_fast.schedule import Schedule, parse_interval

from .helpers import cli, count


def test_intervals():
    assert parse_interval("10s") == 10 and parse_interval("5m") == 300 and parse_interval("250ms") == 0.25
    assert parse_interval("2") == 2 and parse_interval("1.5h") == 5400
    for bad in ("", "0s", "-1s", "10x", "s"):
        with pytest.raises(ValueError):
            parse_interval(bad)


def test_exactly_one_of_every_or_cron():
    with pytest.raises(ValueError):
        Schedule.parse(None, None)
    with pytest.raises(ValueError):
        Schedule.parse("1s", "* * * * *")
    with pytest.raises(ValueError, match="cron"):
        Schedule.parse(None, "61 * * * *")
    assert Schedule.parse(None, "0 2 * * *").cron == "0 2 * * *"


@pytest.fixture
def t(db, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int)")
    return Table(f"{schema}.p")


def test_every_drains_repeatedly(r, db, redis_url, dsn, prefix, t):
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i} for i in range(100)])
    out = cli(
        "schedule",
        "--redis",
        redis_url,
        "--dsn",
        dsn,
        "--prefix",
        prefix,
        "--every",
        "100ms",
        "--max-runs",
        "3",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    reports = [orjson.loads(line) for line in out.stdout.splitlines()]
    assert [rep["upserted"] for rep in reports] == [100, 0, 0]
    assert count(db, t.name) == 100


def test_sigterm_stops_it_cleanly(r, db, redis_url, dsn, prefix, t):
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syncwd_fast",
            "schedule",
            "--redis",
            redis_url,
            "--dsn",
            dsn,
            "--prefix",
            prefix,
            "--every",
            "1s",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        proc.stdout.readline()  # the first drain is done
        Syncwd(r, prefix=prefix).update(t, {"id": 1, "v": 1})
        deadline = time.monotonic() + 30
        # Each drain prints its report when it ends: after the one that landed
        # the write, the schedule waits a second for the next (a signal during a
        # drain is exit 4, stopped after its batch: another test's case).
        while time.monotonic() < deadline and orjson.loads(proc.stdout.readline())["upserted"] != 1:
            pass
        assert count(db, t.name) == 1  # a later run picked up the new write
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_usage_errors_exit_2(redis_url, dsn):
    out = cli("schedule", "--redis", redis_url, "--dsn", dsn)
    assert out.returncode == 2 and "exactly one" in out.stderr
    out = cli("schedule", "--redis", redis_url, "--dsn", dsn, "--cron", "not cron")
    assert out.returncode == 2 and "invalid cron" in out.stderr


def test_it_says_when_the_next_drain_is_due_and_a_signal_while_idle_ends_it_quietly(r, db, redis_url, dsn, prefix, t):
    proc = subprocess.Popen(
        [sys.executable, "-m", "syncwd_fast", "schedule", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix]
        + ["--every", "1h", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert orjson.loads(proc.stdout.readline())["exit_code"] == 0  # the first drain, at once
        due = ""
        while "next drain at " not in due:  # then it waits an hour (warnings may come first)
            due = proc.stderr.readline()
            assert due, "the schedule ended without saying when the next drain is due"
        assert "(in 59 min)" in due or "(in 1 h)" in due, due
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert "SIGTERM: no drain under way; the schedule ends" in rest and "batch in flight" not in rest
