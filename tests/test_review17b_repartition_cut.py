"""Review: a repartition cut short (a Redis fault, or kill -9) leaves records
of the old count in their old partition until the command runs again. A
drain in between must not land such a stale copy over a newer value that a
writer of the new count wrote to the record's new partition."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import redis

from syncwd_fast import FastDrainer, Syncwd, Table, repartition_table, show_table
from syncwd_fast import repartition as repartition_module
from syncwd_fast.keys import partition_of

from .helpers import cli, last_json, rows


def an_id_moving_down(before: int, after: int) -> str:
    """An id whose new partition is drained before its old one (tasks go in
    partition order), so the stale copy, drained last, would win."""
    for i in range(10_000):
        rid = str(i)
        if partition_of(rid, after) < partition_of(rid, before):
            return rid
    raise AssertionError("no such id")


def drain(r: Any, dsn: str, prefix: str) -> Any:
    with FastDrainer(r, dsn, prefix=prefix, workers=1) as drainer:
        return drainer.drain()


def setup_table(r: Any, db: Any, schema: str, prefix: str) -> tuple[Table, str]:
    db.execute(f"CREATE TABLE {schema}.progress (id int PRIMARY KEY, v text)")
    old = Table(f"{schema}.progress", partitions=3)
    rid = an_id_moving_down(3, 4)
    Syncwd(r, prefix=prefix).update_many(old, [{"id": int(rid), "v": "old"}] + [{"id": i, "v": "x"} for i in range(50)])
    # the id was written last in its partition's call: it holds "old"
    Syncwd(r, prefix=prefix).update(old, {"id": int(rid), "v": "old"})
    return old, rid


def check_no_stale_landing(r: Any, db: Any, dsn: str, prefix: str, old: Table, rid: str) -> None:
    new = Table(old.name, partitions=4)
    Syncwd(r, prefix=prefix).update(new, {"id": int(rid), "v": "new"})  # a writer of the new count
    report = drain(r, dsn, prefix)
    landed = dict(rows(db, old.name))
    assert landed.get(int(rid)) != "old", (report.to_dict(), landed.get(int(rid)))
    if report.tables[old.name].error:  # refused until the move is finished: it must say how
        assert "tables repartition" in report.tables[old.name].error
    # The command run again finishes the move; then everything lands, the newest value of the id.
    done = repartition_table(r, old.name, 4, prefix=prefix)
    assert done.before == 4 and done.after == 4
    report = drain(r, dsn, prefix)
    assert report.exit_code == 0, report.to_dict()
    landed = dict(rows(db, old.name))
    assert landed[int(rid)] == "new" and len(landed) == 50
    assert all(p["dirty"] == 0 for p in show_table(r, old.name, prefix=prefix)["partitions"])


def test_a_drain_after_a_repartition_cut_by_a_redis_fault_lands_no_stale_value(r, db, dsn, prefix, schema, monkeypatch):
    old, rid = setup_table(r, db, schema, prefix)

    def fault(*args: Any, **kw: Any) -> None:
        raise redis.exceptions.ConnectionError("link lost (test)")

    monkeypatch.setattr(repartition_module, "_move_dirty", fault)
    with pytest.raises(redis.exceptions.ConnectionError):
        repartition_table(r, old.name, 4, prefix=prefix)
    monkeypatch.undo()
    check_no_stale_landing(r, db, dsn, prefix, old, rid)


KILL_MID_MOVE = textwrap.dedent(
    """
    import os, signal, sys
    import redis
    from syncwd_fast import repartition
    real = repartition._move
    def move(*args, **kw):
        real(*args, **kw)
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 after the first page moved
    repartition._move = move
    repartition.repartition_table(redis.Redis.from_url(sys.argv[1]), sys.argv[2], 4, prefix=sys.argv[3])
    """
)


def test_a_drain_after_a_repartition_killed_mid_move_lands_no_stale_value(r, db, dsn, redis_url, prefix, schema):
    old, rid = setup_table(r, db, schema, prefix)
    done = subprocess.run(
        [sys.executable, "-c", KILL_MID_MOVE, redis_url, old.name, prefix], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert int(Table.from_registry(old.name, r.hget(f"{prefix}:tables", old.name)).partitions) == 4
    check_no_stale_landing(r, db, dsn, prefix, old, rid)


def test_the_cli_drain_says_to_finish_the_repartition(r, db, dsn, redis_url, prefix, schema, monkeypatch):
    old, rid = setup_table(r, db, schema, prefix)

    def fault(*args: Any, **kw: Any) -> None:
        raise redis.exceptions.TimeoutError("timed out (test)")

    monkeypatch.setattr(repartition_module, "_move_dirty", fault)
    with pytest.raises(redis.exceptions.TimeoutError):
        repartition_table(r, old.name, 4, prefix=prefix)
    monkeypatch.undo()
    out = cli("drain", "--redis", redis_url, "--prefix", prefix, "--dsn", dsn, "--json")
    error = last_json(out.stdout)["tables"][old.name]["error"]
    assert out.returncode == 1 and f"tables repartition {old.name} --partitions 4" in error, out
    assert rows(db, old.name) == []
    out = cli("tables", "repartition", old.name, "--partitions", "4", "--redis", redis_url, "--prefix", prefix)
    assert out.returncode == 0, out.stderr
    out = cli("drain", "--redis", redis_url, "--prefix", prefix, "--dsn", dsn, "--json")
    assert out.returncode == 0, out.stderr
    assert len(rows(db, old.name)) == 50
