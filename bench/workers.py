"""``python -m bench.workers``: ``--workers N`` (threads in one drain
process) against N drain processes of one worker each, over one table of
16 partitions, on the same records, alternated in one run (A-B-C, C-B-A, ...).

Three sides per N: ``threads`` (one process, ``--workers N``), ``processes``
(N processes started together, ``--skip-busy``: a partition another holds
is passed at once) and ``processes-watch`` (the same without
``--skip-busy``: a held lease is watched until its holder renews it, up to a
second). Nothing but the leases and advisory locks divides the partitions
between processes. Per side, medians of the rounds: rows/s (records over the
longest drain's own seconds, and over the wall time with every process's
Python start-up), each drain process's CPU per row (and net of its start-up),
redis-server's and PostgreSQL's (servers of the bench's own: bench/fleet_run.py).

    python -m bench.workers --records 200000 --n 2,4 --rounds 3 [--json-out FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from syncwd_fast.table import Table

from . import fleet_run, tables
from .fleet_run import machine
from .report import emit, median_at
from .run import log
from .scaling import SCHEMA

PARTITIONS = 16
SIDES = ("threads", "processes", "processes-watch")


def side(servers: fleet_run.Servers, client: Any, name: str, n: int, records: int, batch: int) -> dict[str, Any]:
    servers.flush()
    table = Table(f"{SCHEMA}.narrow", key="id", partitions=PARTITIONS)
    prefix = "workers"
    startup = fleet_run.written(servers, client, prefix, table, records, batch)
    if name == "threads":
        result = fleet_run.run_drains(servers, prefix, batch, 1, n)
    else:
        extra = ("--skip-busy",) if name == "processes" else ()
        result = fleet_run.run_drains(servers, prefix, batch, n, 1, extra)
    fleet_run.landed(result, servers, table, records, f"{name} x{n}")
    processes = len(result.reports)
    return {
        "rows_per_second": round(records / result.seconds, 1),
        "rows_per_second_wall": round(records / result.cpu.wall, 1),
        "upserted_each": [r.get("upserted") for r in result.reports],
        "busy_reported": sum(len(t["busy"]) for r in result.reports for t in r["tables"].values()),
        "drain_startup_cpu_s": round(startup, 3),
        "cpu_us_per_row": result.cpu.per_row(records, startup),
        "processes": processes,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.workers", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--n", default="2,4", help="workers / processes to compare (default 2,4)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each in the other order (default 3)")
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    started = time.perf_counter()
    counts = [int(x) for x in args.n.split(",") if x.strip()]
    results: dict[str, Any] = {
        "machine": machine(),
        "records": args.records,
        "partitions": PARTITIONS,
        "batch": args.batch,
        "rounds": args.rounds,
        "n": {},
    }
    postgres = fleet_run.start_postgres()
    try:
        tables.reset_schema(postgres.dsn, SCHEMA)
        servers = fleet_run.start("standalone", postgres)
        try:
            client = servers.client()
            for n in counts:
                runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SIDES}
                for round_ in range(args.rounds):
                    for name in SIDES if round_ % 2 == 0 else SIDES[::-1]:
                        log(f"n={n}: round {round_ + 1}, {name}")
                        got = side(servers, client, name, n, args.records, args.batch)
                        runs[name].append(got)
                        log(f"  {got['rows_per_second']:,.0f} rows/s, CPU us/row {got['cpu_us_per_row']}")
                results["n"][str(n)] = {
                    name: {
                        "rows_per_second": median_at(got, "rows_per_second"),
                        "rows_per_second_wall": median_at(got, "rows_per_second_wall"),
                        "cpu_us_per_row": {
                            k: median_at(got, "cpu_us_per_row", k)
                            for k in ("drain", "drain_net", "redis", "postgres", "total")
                        },
                        "runs": got,
                    }
                    for name, got in runs.items()
                }
        finally:
            servers.close()
    finally:
        postgres.close()
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    emit(results, args.json_out)


if __name__ == "__main__":
    main()
