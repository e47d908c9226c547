"""Soak: writer threads updating and deleting random records while drains run
all the time, in-process and as `python -m syncwd_fast drain` processes (every
other one killed with SIGKILL mid-run). After the writers stop, one final drain
must leave PostgreSQL with exactly the last written values and nothing waiting
in Redis.

Length: ``--soak-seconds`` (default 30).
"""

from __future__ import annotations

import itertools
import random
import subprocess
import threading
import time
from typing import Any

import orjson
import pytest

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.status import table_status

from .helpers import drain_command

KEYSPACE = 5000
PARTITIONS = 4
WRITERS = 3


@pytest.mark.slow
def test_soak_writers_racing_drains_end_with_the_last_values(request, r, db, dsn, redis_url, prefix, schema):
    seconds = float(request.config.getoption("--soak-seconds"))
    db.execute(f"CREATE TABLE {schema}.soak (id int PRIMARY KEY, v bigint NOT NULL, s text)")
    t = Table(f"{schema}.soak", partitions=PARTITIONS)
    sw = Syncwd(r, prefix=prefix)
    sw.register(t)

    lock = threading.Lock()  # held around each write and its model update: the model follows Redis' order
    model: dict[int, tuple[int, str]] = {}
    versions = itertools.count(1)
    counts = {"update_many": 0, "update": 0, "delete": 0, "rows": 0}
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        rng = random.Random(n)
        try:
            while not stop.is_set():
                op = rng.random()
                with lock:
                    if op < 0.5:
                        rows = []
                        for i in rng.sample(range(KEYSPACE), rng.randint(1, 100)):
                            v = next(versions)
                            rows.append({"id": i, "v": v, "s": f"w{n}-{v}"})
                        sw.update_many(t, rows)
                        for row in rows:
                            model[row["id"]] = (row["v"], row["s"])
                        counts["update_many"] += 1
                        counts["rows"] += len(rows)
                    elif op < 0.85:
                        v = next(versions)
                        i = rng.randrange(KEYSPACE)
                        sw.update(t, {"id": i, "v": v, "s": f"w{n}-{v}"})
                        model[i] = (v, f"w{n}-{v}")
                        counts["update"] += 1
                    else:
                        i = rng.randrange(KEYSPACE)
                        sw.delete(t, i)
                        model.pop(i, None)
                        counts["delete"] += 1
                if op < 0.05:
                    time.sleep(0.001)  # let the drainers have the GIL now and then
        except BaseException as exc:
            errors.append(exc)  # reported by the main thread

    reports: list[Any] = []

    def drain_loop() -> None:
        try:
            while not stop.is_set():
                report = FastDrainer(r, dsn, prefix=prefix, batch=500, workers=2).drain()
                reports.append(report)
                assert report.exit_code == 0, report.to_dict()
                time.sleep(0.05)
        except BaseException as exc:
            errors.append(exc)  # reported by the main thread

    threads = [threading.Thread(target=writer, args=(n,), name=f"soak-writer-{n}") for n in range(WRITERS)]
    threads.append(threading.Thread(target=drain_loop, name="soak-drain"))
    for thread in threads:
        thread.start()

    cli_runs: list[tuple[str, int]] = []
    rng = random.Random(42)
    deadline = time.monotonic() + seconds
    try:
        n = 0
        while time.monotonic() < deadline and not errors:
            n += 1
            kill = n % 2 == 0
            with subprocess.Popen(
                drain_command(redis_url, dsn, prefix, "--batch", "300", "--lease-seconds", "5", "--json"),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ) as proc:
                if kill:
                    try:
                        proc.wait(rng.uniform(0.3, 1.5))
                    except subprocess.TimeoutExpired:
                        proc.kill()
                out, err = proc.communicate(timeout=120)
            if proc.returncode == -9:
                cli_runs.append(("killed", -9))
                continue
            assert proc.returncode == 0, (proc.returncode, out, err)
            report = orjson.loads(out.strip().splitlines()[-1])
            assert report["exit_code"] == 0 and not report["aborted"], report
            cli_runs.append(("done", report["upserted"] + report["deleted"]))
            time.sleep(rng.uniform(0.5, 2.0))
    finally:
        stop.set()
        for thread in threads:
            thread.join(120)
    assert not errors, errors
    assert any(kind == "done" for kind, _ in cli_runs), cli_runs
    assert counts["rows"] + counts["update"] > 0

    # A killed drainer's lease (5 s) must run out before the final drain takes its partitions.
    leases = [t.keys(p, prefix).lease for p in range(PARTITIONS)]
    end = time.monotonic() + 15
    while r.exists(*leases) and time.monotonic() < end:
        time.sleep(0.1)
    final = FastDrainer(r, dsn, prefix=prefix, batch=5000).drain()
    assert final.exit_code == 0, final.to_dict()
    assert not final.tables[t.name].busy, final.to_dict()

    landed = {i: (v, s) for i, v, s in db.execute(f"SELECT id, v, s FROM {t.name}").fetchall()}
    missing = model.keys() - landed.keys()
    extra = landed.keys() - model.keys()
    wrong = {i for i in model.keys() & landed.keys() if landed[i] != model[i]}
    assert not (missing or extra or wrong), (sorted(missing)[:10], sorted(extra)[:10], sorted(wrong)[:10])
    status = table_status(r, prefix)[t.name]
    assert (status["dirty"], status["in_run"], status["inflight"], status["dead"]) == (0, 0, 0, 0), status
    assert status["active_runs"] == {}, status
    print(
        f"soak {seconds:.0f}s: writes {counts}, {len(reports)} in-process drains, "
        f"cli drains {cli_runs}, {len(model)} live records"
    )
