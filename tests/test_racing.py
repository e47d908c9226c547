"""Racing drainers: two `python -m syncwd_fast drain` processes started together
on the same tables share the partitions, never merge one twice, and land every
record; and `--lease-seconds` sets the partition lease they hold.

PostgreSQL observes the race too: a row trigger on the targets records, for
every row written, the drainer (its application_name), the transaction and
the record id.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from typing import Any

import orjson
from psycopg.conninfo import make_conninfo

from syncwd_fast import Syncwd, Table
from syncwd_fast.status import table_status

from .helpers import count, drain_command

PARTITIONS = 8
PER_TABLE = 20_000
BATCH = 200


def audited(db: Any, schema: str, table: str, key: str) -> None:
    db.execute(
        f"CREATE TRIGGER audit AFTER INSERT OR UPDATE OR DELETE ON {schema}.{table}"
        f" FOR EACH ROW EXECUTE FUNCTION {schema}.audit('{key}')"
    )


def test_two_racing_drains_share_the_partitions_and_merge_each_record_once(r, db, dsn, redis_url, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY, v int NOT NULL, s text)")
    db.execute(f"CREATE TABLE {schema}.b (k text PRIMARY KEY, n bigint NOT NULL)")
    db.execute(f"CREATE TABLE {schema}.audit (tbl text, id text, op text, xid bigint, app text)")
    db.execute(
        f"CREATE FUNCTION {schema}.audit() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN INSERT INTO {schema}.audit VALUES (TG_TABLE_NAME,"
        f" to_jsonb(coalesce(NEW, OLD)) ->> TG_ARGV[0], TG_OP, txid_current(),"
        f" current_setting('application_name')); RETURN NULL; END $$"
    )
    audited(db, schema, "a", "id")
    audited(db, schema, "b", "k")
    a = Table(f"{schema}.a", partitions=PARTITIONS)
    b = Table(f"{schema}.b", key="k", partitions=PARTITIONS)
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(a, [{"id": i, "v": i * 3, "s": f"s{i}"} for i in range(PER_TABLE)])
    sw.update_many(b, [{"k": f"key-{i}", "n": -i} for i in range(PER_TABLE)])

    names = ("drainer_one", "drainer_two")
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(
                subprocess.Popen(
                    drain_command(
                        redis_url,
                        make_conninfo(dsn, application_name=name),
                        prefix,
                        "--json",
                        "--batch",
                        str(BATCH),
                    ),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            for name in names
        ]
        outputs = [(proc.communicate(timeout=300), proc.returncode) for proc in procs]
    reports = {}
    for name, ((out, err), code) in zip(names, outputs):
        assert code == 0, (name, code, out, err)
        report = orjson.loads(out.strip().splitlines()[-1])
        assert report["exit_code"] == 0 and not report["aborted"], report
        assert report["dead_lettered"] == 0 and report["deleted"] == 0, report
        reports[name] = report

    # Every record landed with its value.
    assert count(db, a.name) == PER_TABLE and count(db, b.name) == PER_TABLE
    assert db.execute(f"SELECT count(*) FROM {a.name} WHERE v <> id * 3 OR s <> 's' || id").fetchone()[0] == 0
    assert db.execute(f"SELECT count(*) FROM {b.name} WHERE k <> 'key-' || (-n)").fetchone()[0] == 0
    for table in (a, b):
        status = table_status(r, prefix)[table.name]
        assert (status["dirty"], status["in_run"], status["inflight"], status["dead"]) == (0, 0, 0, 0), status

    # The reports: no record merged twice, no partition busy for both.
    for table in (a, b):
        per = [reports[name]["tables"][table.name] for name in names]
        assert sum(p["upserted"] for p in per) == PER_TABLE, per
        assert not set(per[0]["busy"]) & set(per[1]["busy"]), per
        assert all(p["error"] is None for p in per), per

    # PostgreSQL's view: each record written by exactly one transaction of one
    # drainer; a transaction holds one partition's batch; a partition's rows
    # come from one drainer, and never from a drainer that reported it busy.
    audit = db.execute(f"SELECT tbl, id, op, xid, app FROM {schema}.audit").fetchall()
    assert len(audit) == 2 * PER_TABLE
    assert len({(tbl, rid) for tbl, rid, _, _, _ in audit}) == 2 * PER_TABLE
    assert {op for _, _, op, _, _ in audit} == {"INSERT"}
    tables = {"a": a, "b": b}
    by_xid: dict[int, set[tuple[str, int, str]]] = {}
    by_partition: dict[tuple[str, int], set[str]] = {}
    rows_by_app: dict[tuple[str, str], int] = {}
    for tbl, rid, _, xid, app in audit:
        p = tables[tbl].partition(rid)
        by_xid.setdefault(xid, set()).add((tbl, p, app))
        by_partition.setdefault((tbl, p), set()).add(app)
        rows_by_app[(tbl, app)] = rows_by_app.get((tbl, app), 0) + 1
    assert all(len(owners) == 1 for owners in by_xid.values()), by_xid
    assert all(len(apps) == 1 for apps in by_partition.values()), by_partition
    assert len(by_xid) >= 2 * PER_TABLE // BATCH
    for name in names:
        for tbl, table in tables.items():
            t_report = reports[name]["tables"][table.name]
            assert rows_by_app.get((tbl, name), 0) == t_report["upserted"], (name, tbl, rows_by_app, t_report)
            for p in t_report["busy"]:
                assert name not in by_partition.get((tbl, p), set()), (name, tbl, p, by_partition)
    print({name: {t: (rep["upserted"], rep["busy"]) for t, rep in reports[name]["tables"].items()} for name in names})


def test_lease_seconds_sets_the_lease_the_drain_holds(r, db, dsn, redis_url, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.l (id int PRIMARY KEY, v int NOT NULL)")
    t = Table(f"{schema}.l", partitions=2)
    n = 60_000
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i} for i in range(n)])
    leases = [t.keys(p, prefix).lease for p in range(2)]
    seen: list[int] = []
    with subprocess.Popen(
        drain_command(redis_url, dsn, prefix, "--json", "--batch", "200", "--lease-seconds", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            while proc.poll() is None:
                pipe = r.pipeline(transaction=False)
                for key in leases:
                    pipe.pttl(key)
                seen.extend(ms for ms in pipe.execute() if ms != -2)  # -2: no lease right now
                time.sleep(0.002)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, (out, err)
    assert orjson.loads(out.strip().splitlines()[-1])["upserted"] == n
    assert seen, "never saw the drain holding a lease"
    assert all(0 <= ms <= 2000 for ms in seen), sorted(set(seen))[-5:]
    assert r.exists(*leases) == 0, "the leases are released after the drain"
    assert count(db, t.name) == n
