"""`status --partitions` and the fields it adds (per partition: backlog,
active run, lease holder alive or dead, last run; per table: last_run,
active, waiting_since), checked against real drains: one that finished,
one stopped mid-run, one killed; through the Python API, CliRunner, a
subprocess and a terminal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

import syncwd_fast
from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.cli import main
from syncwd_fast.status_view import human_age, human_duration, plain_lines

from .helpers import cli, count, drain_command, last_json, wait_for


def without_ages(value: Any) -> Any:
    """A status object less what moves with the clock (``ago``, a lease's ``expires_in``)."""
    if isinstance(value, dict):
        return {k: without_ages(v) for k, v in value.items() if k not in ("ago", "expires_in")}
    if isinstance(value, list):
        return [without_ages(v) for v in value]
    return value


@pytest.fixture
def drained(r: Any, db: Any, dsn: str, schema: str, prefix: str) -> tuple[Table, Any]:
    db.execute(f"CREATE TABLE {schema}.s (id int PRIMARY KEY, v int CHECK (v >= 0))")
    t = Table(f"{schema}.s", partitions=3)
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "v": i - 4} for i in range(600)])  # 0..3 refused
    sw.delete(t, 599)
    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert (report.upserted, report.deleted, report.dead_lettered) == (595, 1, 4)
    return t, report


def test_partitions_after_a_drain_add_up_to_the_table_and_the_report(
    r: Any, redis_url: str, prefix: str, drained: tuple[Table, Any]
) -> None:
    t, report = drained
    before = time.time()
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": 1} for i in range(700, 710)])  # waiting now
    got = syncwd_fast.status(r, prefix=prefix, partitions=True)
    table = got["tables"][t.name]
    rows = table["per_partition"]
    assert [row["partition"] for row in rows] == [0, 1, 2]
    for field in ("dirty", "in_run", "inflight", "dead"):
        assert sum(row[field] for row in rows) == table[field]
    assert (table["dirty"], table["dead"]) == (10, 4)
    lasts = [row["last_run"] for row in rows]
    assert sum(last["upserted"] for last in lasts) == report.upserted == table["last_run"]["upserted"]
    assert sum(last["deleted"] for last in lasts) == report.deleted == table["last_run"]["deleted"]
    assert sum(last["dead_lettered"] for last in lasts) == report.dead_lettered == table["last_run"]["dead_lettered"]
    assert table["last_run"]["partitions"] == 3
    assert table["last_run"]["finished_at"] == table["last_drained_at"] == max(last["finished_at"] for last in lasts)
    for row, last in zip(rows, lasts):
        assert last["id"] and last["started_at"] <= last["finished_at"] <= time.time()
        assert 0 < last["seconds"] <= report.seconds + 1
        assert last["rows_per_second"] == round((last["upserted"] + last["deleted"]) / last["seconds"], 1)
        assert last["ago"] >= 0
        assert row["active_run"] is None and row["lease"] is None  # finished: the lease released
        # Nothing waiting is older than the last run's snapshot; nothing waiting, nothing to date.
        assert row["waiting_since"] == (last["started_at"] if row["dirty"] else None)
    assert table["waiting_since"] == min(row["waiting_since"] for row in rows if row["dirty"]) <= before
    assert table["active"] == {"runs": 0, "left": 0, "oldest_started_at": None, "leases": 0, "dead_holders": 0}
    assert "per_partition" not in syncwd_fast.status(r, prefix=prefix)["tables"][t.name]

    # The CLI prints the same object, with the flag or its variable.
    runner = CliRunner()
    for args, env in (
        (["--partitions"], {}),
        ([], {"SYNCWD_PARTITIONS": "1"}),
    ):
        out = runner.invoke(main, ["status", "--redis", redis_url, "--prefix", prefix, "--json", *args], env=env)
        assert out.exit_code == 0, out.output
        printed = last_json(out.stdout)
        assert without_ages(printed) == without_ages(orjson.loads(orjson.dumps(got, option=orjson.OPT_NON_STR_KEYS)))


def test_a_run_of_an_older_version_has_no_rate(r: Any, prefix: str, drained: tuple[Table, Any]) -> None:
    t, _ = drained
    meta = t.keys(0, prefix).meta
    r.hdel(meta, "last_started_at", "last_seconds")  # as a drainer before these fields left them
    row = syncwd_fast.status(r, prefix=prefix, partitions=True)["tables"][t.name]["per_partition"][0]
    assert row["last_run"]["started_at"] is None and row["last_run"]["rows_per_second"] is None
    assert row["last_run"]["upserted"] > 0
    table = syncwd_fast.status(r, prefix=prefix)["tables"][t.name]
    assert table["last_run"]["seconds"] is None and table["last_run"]["rows_per_second"] is None


def test_a_drain_stopped_then_killed_mid_run(
    r: Any, db: Any, redis_url: str, dsn: str, prefix: str, schema: str
) -> None:
    db.execute(f"CREATE TABLE {schema}.big (id int PRIMARY KEY, v int NOT NULL)")
    t = Table(f"{schema}.big", partitions=2)
    n = 100_000
    Syncwd(r, prefix=prefix).update_many(t, ({"id": i, "v": i} for i in range(n)))
    proc = subprocess.Popen(
        drain_command(redis_url, dsn, prefix, "--batch", "500", "--workers", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: count(db, t.name) >= 2000, timeout=120), "the drain never started merging"
        proc.send_signal(signal.SIGSTOP)
        stopped = syncwd_fast.status(r, prefix=prefix, partitions=True)["tables"][t.name]
        rows = stopped["per_partition"]
        assert all(row["active_run"] is not None for row in rows)
        for row in rows:
            run, lease = row["active_run"], row["lease"]
            assert run["id"] == stopped["active_runs"][row["partition"]]
            assert abs(run["started_at"] - time.time()) < 120
            assert run["left"] == row["in_run"] + row["inflight"] > 0
            assert (lease["pid"], lease["alive"]) == (proc.pid, True)
            assert lease["host"] and abs(lease["since"] - time.time()) < 120 and 0 < lease["expires_in"] <= 30
            assert lease["holder"] == stopped["leases"][row["partition"]]
            assert row["last_run"] is None and row["waiting_since"] is None  # never drained: no bound known
        assert stopped["active"]["runs"] == 2 and stopped["active"]["leases"] == 2
        assert stopped["active"]["left"] == stopped["in_run"] + stopped["inflight"]
        assert stopped["active"]["oldest_started_at"] == min(row["active_run"]["started_at"] for row in rows)
        assert stopped["dead_holders"] == [] and stopped["active"]["dead_holders"] == 0

        proc.kill()  # SIGKILL reaches a stopped process
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    killed = syncwd_fast.status(r, prefix=prefix, partitions=True)["tables"][t.name]
    assert killed["dead_holders"] == [0, 1] and killed["active"]["dead_holders"] == 2
    assert all(row["lease"]["alive"] is False for row in killed["per_partition"])
    out = cli("status", "--redis", redis_url, "--prefix", prefix, "--partitions")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("no longer running: the next drain takes it over at once") == 2
    assert f"  active runs: 2, {killed['active']['left']} records left, oldest started " in out.stdout
    assert f"{t.name}: " in out.stdout and "partition 1: " in out.stdout and " left; held by " in out.stdout

    # The next drain takes the dead leases over at once and finishes the adopted runs: their start stays the
    # killed drain's snapshot, so nothing waiting afterwards is older than that.
    report = FastDrainer(r, dsn, prefix=prefix, workers=2).drain()
    assert report.exit_code == 0 and count(db, t.name) == n
    after = syncwd_fast.status(r, prefix=prefix, partitions=True)["tables"][t.name]
    for before, row in zip(killed["per_partition"], after["per_partition"]):
        assert row["last_run"]["id"] == before["active_run"]["id"]
        assert row["last_run"]["started_at"] == before["active_run"]["started_at"]
        assert row["active_run"] is None and row["lease"] is None
    assert after["last_run"]["upserted"] == report.upserted  # each partition's last run is this drain's
    assert after["active"]["runs"] == 0 and after["dead_holders"] == []


def test_a_subprocess_prints_plain_lines_off_a_terminal(
    r: Any, redis_url: str, prefix: str, drained: tuple[Table, Any]
) -> None:
    t, _ = drained
    out = cli("status", "--redis", redis_url, "--prefix", prefix, "--partitions", "--table", t.name)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"{t.name}: 0 dirty, 0 in a run, 0 in flight, 4 dead (3 partitions)"
    assert lines[1].startswith("  last drained ") and " ago" in lines[1]
    assert any(
        line.startswith("  last runs (3 partitions): finished ") and "595 upserted, 1 deleted, 4 dead-lettered" in line
        for line in lines
    )
    assert [line.split(":")[0] for line in lines if line.startswith("  partition ")] == [
        f"  partition {n}" for n in range(3)
    ]
    assert "rows/s" in lines[-1]
    # The same lines as the library's plain form, clock aside.
    status = syncwd_fast.status(r, prefix=prefix, tables=[t.name], partitions=True)
    assert len(plain_lines(status)) == len(lines)


def test_a_terminal_gets_rich_tables(redis_url: str, r: Any, prefix: str, drained: tuple[Table, Any]) -> None:
    pexpect = pytest.importorskip("pexpect")
    t, _ = drained
    args = ["-m", "syncwd_fast", "status", "--redis", redis_url, "--prefix", prefix, "--partitions"]
    child = pexpect.spawn(
        sys.executable, args, env={**os.environ, "COLUMNS": "200", "TERM": "xterm"}, encoding="utf-8", timeout=60
    )
    child.expect(pexpect.EOF)
    child.close()
    screen = child.before
    assert child.exitstatus == 0, screen
    assert "syncwd-fast status" in screen and "in flight" in screen and "last runs" in screen
    assert f"{t.name}: 3 partitions" in screen and "┃" in screen  # a table per table, with its partitions
    assert "595 upserted" in screen and "rows/s" in screen


def test_ages_and_durations_read_as_people_say_them() -> None:
    now = 1_000_000.0
    assert human_age(now - 5, now) == "5s ago"
    assert human_age(now - 190, now) == "3m ago"
    assert human_age(now - 2 * 3600 - 5 * 60 - 7, now) == "2h 5m ago"
    assert human_age(now - 3 * 86_400 - 4 * 3600, now) == "3d 4h ago"
    assert human_age(None, now) == "never"
    assert human_duration(0.42) == "0.4s" and human_duration(0) == "0s" and human_duration(45) == "45s"
    assert human_duration(192) == "3m 12s" and human_duration(3600) == "1h" and human_duration(None) == "-"
