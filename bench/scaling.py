"""``python -m bench.scaling``: drain rows/s for ``--workers`` 1, 2, 4 x
partitions 1, 4, 16, on a standalone redis-server and on a 3-master Redis
Cluster, with PostgreSQL's limit from the same run and each process's CPU per
row (the drain process, each redis-server, PostgreSQL's backends and
background processes).

Every server is the bench's own (bench/fleet_run.py): a throwaway
redis-server, a throwaway 3-master cluster, a throwaway PostgreSQL cluster,
so each process's CPU is this run's work alone. Per cell: the records
written afresh (narrow, once each) into an empty target, then one drain
subprocess, timed. The cells run in grid order, then reversed in the next
round (A-B ... B-A); medians of the rounds. The limit (bench/limit.py: typed
rows, text COPY + INSERT ... ON CONFLICT, one connection, no Redis, no
project code) runs once per round and Redis mode, in id order and in the
key order the drain gives PostgreSQL.

On a 2-core machine these figures show contention, not scale: the drain,
Redis and PostgreSQL share two cores. The CPU per row of each process is
what carries to a machine where each has cores of its own.

    python -m bench.scaling --records 200000 --rounds 2 [--json-out FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from syncwd_fast.table import Table

from . import data, fleet_run, limit, tables
from .fleet_run import machine
from .measure import self_cpu
from .report import emit, median_at
from .run import log

SCHEMA = "syncwd_scale"
MASTERS = {"standalone": 1, "cluster": 3}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def cell(
    servers: fleet_run.Servers, client: Any, records: int, batch: int, partitions: int, workers: int
) -> tuple[dict[str, Any], list[int]]:
    """One timed drain of ``records`` over ``partitions`` with ``workers``;
    also the key order it gave PostgreSQL (for the limit)."""
    servers.flush()
    table = Table(f"{SCHEMA}.narrow", key="id", partitions=partitions)
    prefix = f"scale{partitions}"
    startup = fleet_run.written(servers, client, prefix, table, records, batch)
    order = limit.drain_order(client, table, prefix, batch)
    result = fleet_run.run_drains(servers, prefix, batch, 1, workers)
    fleet_run.landed(result, servers, table, records, f"{servers.mode} p{partitions} w{workers}")
    us = result.cpu.per_row(records, startup)
    return {
        "rows_per_second": round(records / result.seconds, 1),
        "seconds": round(result.seconds, 3),
        "drain_startup_cpu_s": round(startup, 3),
        "cpu_us_per_row": us,
        "core_each": fleet_run.core_each(us),
    }, order


def limit_run(servers: fleet_run.Servers, rows: list[tuple[Any, ...]], batch: int) -> dict[str, Any]:
    """PostgreSQL's own bulk path on ``rows`` into an empty target: rows/s
    and CPU per row of this process (the client) and PostgreSQL."""
    table = Table(f"{SCHEMA}.narrow", key="id")
    tables.create(servers.dsn, table, "narrow")
    tables.checkpoint(servers.dsn)
    pg = fleet_run.TreeCpu(servers.postgres_pid).start()
    cpu0 = self_cpu()
    merged, seconds = limit.copy_merge_all(servers.dsn, table, rows, data.column_names("narrow"), batch)
    bench_cpu, pg_cpu = self_cpu() - cpu0, pg.stop()
    if merged != len(rows):
        raise RuntimeError(f"limit merged {merged} of {len(rows)}")
    us = 1e6 / len(rows)
    return {
        "rows_per_second": round(len(rows) / seconds, 1),
        "cpu_us_per_row": {"bench": round(bench_cpu * us, 2), "postgres": round(pg_cpu * us, 2)},
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rows_per_second": median_at(runs, "rows_per_second"),
        "cpu_us_per_row": {
            k: median_at(runs, "cpu_us_per_row", k)
            for k in ("drain", "drain_net", "redis", "postgres", "total", "bench")
        },
        "core_each": median_at(runs, "core_each"),
        "runs": runs,
    }


def table_lines(mode: str, result: dict[str, Any]) -> list[str]:
    lines = [
        f"{mode}: rows/s (2 cores shared) | CPU us/row drain (start-up left out) / redis (all masters) / postgres"
        " | a core each",
        f"  limit, id order: {result['limit']['rows_per_second']:,.0f} rows/s,"
        f" postgres {result['limit']['cpu_us_per_row']['postgres']} us/row;"
        f" drain's order: {result['limit_drain_order']['rows_per_second']:,.0f} rows/s,"
        f" postgres {result['limit_drain_order']['cpu_us_per_row']['postgres']} us/row",
    ]
    for key, s in result["cells"].items():
        us = s["cpu_us_per_row"]
        lines.append(
            f"  {key:>6}: {s['rows_per_second']:>10,.0f} | {us['drain_net']} / {us['redis']} / {us['postgres']}"
            f" | {s['core_each']}"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scaling", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--records", type=int, default=200_000, help="records per cell (default 200000)")
    p.add_argument("--workers", type=_ints, default=[1, 2, 4], help="default 1,2,4")
    p.add_argument("--partitions", type=_ints, default=[1, 4, 16], help="default 1,4,16")
    p.add_argument("--modes", default="standalone,cluster", help="standalone, cluster or both (default both)")
    p.add_argument("--rounds", type=int, default=2, help="rounds, each in the other order (default 2)")
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    started = time.perf_counter()
    grid = [(part, w) for part in args.partitions for w in args.workers]
    rows = limit.typed_rows(data.serialized(data.rows("narrow", 0, args.records, 0)), data.column_names("narrow"))
    results: dict[str, Any] = {
        "machine": machine(),
        "records": args.records,
        "batch": args.batch,
        "width": "narrow",
        "rounds": args.rounds,
        "modes": {},
    }
    postgres = fleet_run.start_postgres()
    try:
        tables.reset_schema(postgres.dsn, SCHEMA)
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            servers = fleet_run.start(mode, postgres)
            try:
                client = servers.client()
                runs: dict[str, list[dict[str, Any]]] = {f"p{part}w{w}": [] for part, w in grid}
                limits: list[dict[str, Any]] = []
                ordered: list[dict[str, Any]] = []
                for round_ in range(args.rounds):
                    order: list[int] = []
                    for part, w in grid if round_ % 2 == 0 else grid[::-1]:
                        log(f"{mode}: round {round_ + 1}, {part} partitions, {w} workers")
                        got, cell_order = cell(servers, client, args.records, args.batch, part, w)
                        if part == max(args.partitions) and not order:
                            order = cell_order  # the limit fed the key order of a drain of the most partitions
                        runs[f"p{part}w{w}"].append(got)
                        log(f"  {got['rows_per_second']:,.0f} rows/s, CPU us/row {got['cpu_us_per_row']}")
                    limits.append(limit_run(servers, rows, args.batch))
                    ordered.append(limit_run(servers, [rows[i] for i in order], args.batch))
                result = {
                    "masters": MASTERS[mode],
                    "limit": summary(limits),
                    "limit_drain_order": summary(ordered),
                    "cells": {key: summary(got) for key, got in runs.items()},
                }
                results["modes"][mode] = result
                print("\n".join(table_lines(mode, result)), flush=True)
            finally:
                servers.close()
    finally:
        postgres.close()
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    emit(results, args.json_out)


if __name__ == "__main__":
    main()
