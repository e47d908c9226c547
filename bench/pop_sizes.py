"""``python -m bench.pop_sizes``: the drain with pops (and acks) of 125, 250
and 500 ids a Redis call, alternated on the same data in one run: each
process's CPU per row, and how long the drain's Redis calls took (p99, p99.9
and the longest, from SLOWLOG). Bigger calls cost Redis and the drain process
less per row and hold other clients up longer per call (``--pop``).

    python -m bench.pop_sizes --records 300000 --pops 125,250,500 --rounds 2
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import drain_run, tables
from .data import WIDTHS
from .measure import per_row
from .report import emit, median_at
from .run import log
from .servers import clear_keys, redis_client, resolve
from .slowlog import ScriptCalls


def one(
    client: Any, redis_url: str, dsn: str, namespace: str, width: str, records: int, batch: int, pop: int
) -> dict[str, Any]:
    """Write ``records`` afresh, then drain them with pops of ``pop`` ids."""
    table, prefix = drain_run.written(client, redis_url, dsn, namespace, width, records, batch)
    with ScriptCalls(client, prefix) as calls:
        result = drain_run.run(client, redis_url, dsn, prefix, batch, extra=("--pop", str(pop)))
    drain_run.landed(result, dsn, table, records, f"drain with --pop {pop}")
    clear_keys(client, prefix)
    stats = calls.stats
    return {
        "rows_per_second": round(result.rate, 1),
        "cpu_us_per_row": per_row(result.cpu, records),
        "calls": {k: stats.get(k) for k in ("calls", "p99_ms", "p99_9_ms", "longest_ms", "over_2ms", "error")},
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.pop_sizes", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--records", type=int, default=300_000)
    p.add_argument("--pops", default="125,250,500", help="ids per Redis call to compare (default 125,250,500)")
    p.add_argument("--rounds", type=int, default=2, help="rounds, each in the other order (default 2)")
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--width", choices=[*WIDTHS, "both"], default="narrow")
    p.add_argument("--redis")
    p.add_argument("--dsn")
    p.add_argument("--json-out", type=Path)
    p.add_argument("--namespace", default="benchp", help="Redis key prefix and PostgreSQL schema syncwd_<namespace>")
    args = p.parse_args(argv)
    pops = [int(x) for x in args.pops.split(",") if x.strip()]
    redis_url, dsn, started = resolve(args.redis, args.dsn)
    client = redis_client(redis_url)
    schema = f"syncwd_{args.namespace}"
    widths = list(WIDTHS) if args.width == "both" else [args.width]
    results: dict[str, Any] = {"records": args.records, "batch": args.batch, "widths": {}}
    try:
        tables.reset_schema(dsn, schema)
        for width in widths:
            runs: dict[int, list[dict[str, Any]]] = {pop: [] for pop in pops}
            for round_ in range(args.rounds):
                for pop in pops if round_ % 2 == 0 else pops[::-1]:
                    log(f"{width}: round {round_ + 1}, pops of {pop}")
                    runs[pop].append(one(client, redis_url, dsn, args.namespace, width, args.records, args.batch, pop))
            summary = {
                str(pop): {
                    "rows_per_second": median_at(got, "rows_per_second", digits=3),
                    "cpu_us_per_row": {
                        k: median_at(got, "cpu_us_per_row", k, digits=3) for k in ("drain", "redis", "postgres")
                    },
                    "calls": {
                        k: median_at(got, "calls", k, digits=3)
                        for k in ("p99_ms", "p99_9_ms", "longest_ms", "over_2ms")
                    },
                    "runs": got,
                }
                for pop, got in runs.items()
            }
            results["widths"][width] = summary
            for size, s in summary.items():
                log(
                    f"{width}: pops of {size}: {s['rows_per_second']:,.0f} rows/s, CPU us/row {s['cpu_us_per_row']},"
                    f" Redis calls {s['calls']}"
                )
        tables.drop_schema(dsn, schema)
    finally:
        for server in started:
            server.close()
    emit(results, args.json_out)


if __name__ == "__main__":
    main()
