"""A fleet: several `syncwd-fast drain` processes over one table of 16
partitions, started together with nothing between them but the leases in
Redis and the advisory locks in PostgreSQL, while a writer keeps updating
records. Every record must end with its latest value, and an audit trigger
on the target (tests/audit.py) must show that no partition was merged by two
transactions at once and that every merge held its partition's lock.

Size: SYNCWD_TEST_FLEET_RECORDS records (default 64,000; the issue's proof
is ``SYNCWD_TEST_FLEET_RECORDS=1000000``, about three minutes per case on
two cores, outside CI).
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from syncwd_fast import Syncwd, Table
from syncwd_fast.keys import partition_of
from syncwd_fast.sinks.postgres import lock_key

from . import audit
from .helpers import drain_command, last_json

RECORDS = int(os.environ.get("SYNCWD_TEST_FLEET_RECORDS", "64000"))
PARTITIONS = 16
CHUNK = 10_000


def _value(i: int, version: int) -> dict[str, Any]:
    return {"id": i, "v": i * 10 + version, "s": f"r{i}-v{version}"}


def _apps(found: list[audit.Merge]) -> dict[str, set[int]]:
    by_app: dict[str, set[int]] = {}
    for merge in found:
        by_app.setdefault(merge.app, set()).update(merge.partitions)
    return by_app


def _owners(found: list[audit.Merge]) -> dict[str, list[int]]:
    """Per drain, the partitions it merged most rows of (its share of the division)."""
    rows: dict[int, dict[str, int]] = {}
    for merge in found:
        for number in merge.partitions:
            rows.setdefault(number, {}).setdefault(merge.app, 0)
            rows[number][merge.app] += merge.rows
    out: dict[str, list[int]] = {}
    for number, by_app in sorted(rows.items()):
        out.setdefault(max(by_app, key=by_app.__getitem__), []).append(number)
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("processes", "workers", "extra"),
    [(2, 1, ()), (2, 2, ()), (3, 1, ("--skip-busy",))],
    ids=["2-processes", "2-processes-2-workers", "3-processes-skip-busy"],
)
def test_drain_processes_divide_the_partitions_and_never_merge_one_at_once(
    r, db, dsn, redis_url, prefix, schema, processes, workers, extra
):
    name = f"{schema}.fleet"
    db.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, v bigint NOT NULL, s text NOT NULL)")
    audit.install(db, schema, name, lock_key(prefix, name, 0)[0])
    table = Table(name, partitions=PARTITIONS)
    sw = Syncwd(r, prefix=prefix)
    sw.register(table)
    latest: dict[int, int] = {}
    for version in (0, 1):  # every record twice: the second write is its value
        for start in range(0, RECORDS, CHUNK):
            stop = min(start + CHUNK, RECORDS)
            sw.update_many(table, [_value(i, version) for i in range(start, stop)])
            latest.update((i, version) for i in range(start, stop))

    batch = str(min(5000, max(500, RECORDS // 64)))  # several merges per partition
    drains = [
        subprocess.Popen(
            drain_command(
                redis_url,
                make_conninfo(dsn, application_name=f"drain-{n}"),
                prefix,
                "--batch",
                batch,
                "--workers",
                str(workers),
                "--json",
                *extra,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]

    # Writes racing the drains: they land in this drain or the next, never under an older value.
    stop = threading.Event()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer() -> None:
        rng = random.Random(18)
        version = 2
        try:
            while not stop.is_set():
                ids = rng.sample(range(RECORDS), 200)
                sw.update_many(table, [_value(i, version) for i in ids])
                with lock:
                    latest.update((i, version) for i in ids)
                version += 1
                time.sleep(0.02)
        except BaseException as exc:  # reported by the test, not lost in a thread
            errors.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    outputs = []
    try:
        for proc in drains:
            outputs.append(proc.communicate(timeout=1800))
    finally:
        stop.set()
        thread.join(30)
        for proc in drains:
            if proc.poll() is None:
                proc.kill()
    assert not errors, errors
    reports = []
    for proc, (out, err) in zip(drains, outputs):
        assert proc.returncode == 0, err[-3000:]
        reports.append(last_json(out))
    assert all(rep["speedups"] in ("c", "python") and not rep["aborted"] for rep in reports), reports

    # The writes made during the drains wait for the next one.
    final = subprocess.run(
        drain_command(redis_url, make_conninfo(dsn, application_name="final"), prefix, "--json"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert final.returncode == 0, final.stderr[-3000:]

    got = dict(db.execute(f"SELECT id, v FROM {name}").fetchall())
    assert len(got) == RECORDS
    wrong = [i for i, version in latest.items() if got.get(i) != i * 10 + version]
    assert not wrong, f"{len(wrong)} records without their latest value, e.g. {wrong[:5]}"
    texts = db.execute(f"SELECT count(*) FROM {name} WHERE s <> 'r' || id || '-v' || (v - id * 10)").fetchone()
    assert texts == (0,)

    found = audit.merges(db, schema, PARTITIONS)
    assert sum(m.rows for m in found) >= RECORDS
    assert not audit.unfenced(found), audit.unfenced(found)[:3]
    clashes = audit.overlaps(found)
    assert not clashes, clashes[:3]
    by_app = _apps(found)
    merged = {app: parts for app, parts in by_app.items() if app.startswith("drain-")}
    # The drains divided the table between them: every partition was merged,
    # and by more than one process.
    assert set().union(*by_app.values()) == set(range(PARTITIONS))
    assert len(merged) >= 2, merged
    busy = sum(len(t["busy"]) for rep in reports for t in rep["tables"].values())
    print(
        f"\n{RECORDS:,} records, {processes} processes x {workers} workers {' '.join(extra)}:"
        f" {len(found)} merges, no two of one partition at once;"
        f" partitions each process merged most rows of {_owners(found)},"
        f" busy reported {busy}, drain seconds {[round(rep['seconds'], 1) for rep in reports]},"
        f" upserted {[rep['upserted'] for rep in reports]}"
    )


def test_the_audit_sees_two_merges_of_one_partition_at_once(db, schema):
    """The check above can fail: two transactions writing one partition's rows
    at the same time, without its advisory lock, are both caught."""
    name = f"{schema}.fleet"
    db.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, v bigint NOT NULL, s text NOT NULL)")
    audit.install(db, schema, name, 1234)
    same = [i for i in range(1000) if partition_of(str(i), PARTITIONS) == 3][:2]
    dsn = db.info.dsn
    with psycopg.connect(dsn) as a, psycopg.connect(dsn) as b:
        a.execute(f"INSERT INTO {name} VALUES (%s, 1, 'a')", (same[0],))
        b.execute(f"INSERT INTO {name} VALUES (%s, 1, 'b')", (same[1],))
        a.execute(f"UPDATE {name} SET v = 2 WHERE id = %s", (same[0],))
        a.commit()
        b.commit()
    found = audit.merges(db, schema, PARTITIONS)
    assert len(found) == 2
    clashes = audit.overlaps(found)
    assert [number for number, _, _ in clashes] == [3]
    assert len(audit.unfenced(found)) == 2  # neither held the lock


def test_the_audit_passes_merges_one_after_another_under_the_lock(db, schema):
    name = f"{schema}.fleet"
    db.execute(f"CREATE TABLE {name} (id bigint PRIMARY KEY, v bigint NOT NULL, s text NOT NULL)")
    audit.install(db, schema, name, 1234)
    same = [i for i in range(1000) if partition_of(str(i), PARTITIONS) == 5][:2]
    with psycopg.connect(db.info.dsn) as conn:
        for i in same:
            conn.execute("SELECT pg_advisory_xact_lock(1234, 5)")
            conn.execute(f"INSERT INTO {name} VALUES (%s, 1, 'x')", (i,))
            conn.commit()
    found = audit.merges(db, schema, PARTITIONS)
    assert len(found) == 2 and all(m.locks == {5} == m.partitions for m in found)
    assert not audit.overlaps(found) and not audit.unfenced(found)
