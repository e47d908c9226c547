"""`status` of a run left by an earlier version, which kept its in-flight ids
in a set (snapshot.lua adopts such a run: they go back into its run set):
the status read took every in-flight key for a hash and failed with
WRONGTYPE, for every table, until a drain adopted the run; so did `get`."""

from __future__ import annotations

from typing import Any

import orjson
from click.testing import CliRunner

import syncwd_fast
from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.cli import main

from .helpers import cli, count, last_json


def test_a_run_of_an_earlier_version_is_counted(
    r: Any, redis_url: str, db: Any, dsn: str, schema: str, prefix: str
) -> None:
    db.execute(f"CREATE TABLE {schema}.o (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.o")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "v": i} for i in (1, 2, 3)])
    keys = t.keys(0, prefix)
    # As that version left it: the run set holds the ids not read yet, the in-flight set those popped.
    r.rename(keys.dirty, keys.run("old"))
    r.smove(keys.run("old"), keys.inflight("old"), "2")
    r.smove(keys.run("old"), keys.inflight("old"), "3")
    r.hset(keys.meta, mapping={"run": "old", "started_at": 1})
    sw.update(t, {"id": 4, "v": 4})

    want = {"dirty": 1, "in_run": 1, "inflight": 2}
    got = syncwd_fast.status(r, prefix=prefix, partitions=True)["tables"][t.name]
    assert {k: got[k] for k in want} == want
    assert got["active"]["left"] == 3 and got["per_partition"][0]["active_run"]["left"] == 3
    res = CliRunner().invoke(main, ["status", "--redis", redis_url, "--prefix", prefix, "--json"])
    assert res.exit_code == 0, res.output
    assert {k: last_json(res.output)["tables"][t.name][k] for k in want} == want
    out = cli("status", "--redis", redis_url, "--prefix", prefix)
    assert out.returncode == 0, out.stderr
    assert f"{t.name}: 1 dirty, 1 in a run, 2 in flight, 0 dead" in out.stdout
    # `tables show` reads partitions as status does: the same counts, no WRONGTYPE.
    (part,) = syncwd_fast.show_table(r, t.name, prefix=prefix)["partitions"]
    assert (part["dirty"], part["in_run"], part["inflight"], part["run"]) == (1, 1, 2, "old")

    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert report.upserted == 4 and count(db, f"{schema}.o") == 4
    after = syncwd_fast.status(r, prefix=prefix)["tables"][t.name]
    assert (after["dirty"], after["in_run"], after["inflight"], after["active"]["runs"]) == (0, 0, 0, 0)


def test_get_of_a_record_in_flight_in_a_run_of_an_earlier_version(r: Any, redis_url: str, prefix: str) -> None:
    t = Table("o.get")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": 1}, {"id": 2}])
    keys = t.keys(0, prefix)
    r.rename(keys.dirty, keys.run("old"))
    r.smove(keys.run("old"), keys.inflight("old"), "2")
    r.hset(keys.meta, "run", "old")
    got = syncwd_fast.admin.record(r, t.name, "2", prefix=prefix)
    assert (got["in_run"], got["in_flight"], got["dirty"]) == (False, True, False)
    got = syncwd_fast.admin.record(r, t.name, "1", prefix=prefix)
    assert (got["in_run"], got["in_flight"]) == (True, False)
    out = cli("get", "--redis", redis_url, "--prefix", prefix, t.name, "2")
    assert out.returncode == 0, out.stderr
    assert orjson.loads(out.stdout)["in_flight"] is True
