"""``python -m bench.in_process``: one drain run inside this process
(``FastDrainer``), for profilers: its records are written first, and only the
drain is measured. It prints each process's CPU per row (this process is the
drain), so a profile can be read against them.

    py-spy record --gil --format raw -o drain.txt -- python -m bench.in_process --records 300000
    python -m bench.in_process --records 300000 --pop 500 --width wide

``py-spy --gil`` samples only the thread holding the GIL: without it, the
drain's three threads waiting for the GIL show up as time in their socket
calls.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from syncwd_fast import FastDrainer

from . import drain_run, tables
from .data import WIDTHS
from .measure import CpuMeter, per_row
from .run import log
from .servers import clear_keys, redis_client, resolve


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m bench.in_process", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--records", type=int, default=300_000)
    p.add_argument("--width", choices=list(WIDTHS), default="narrow")
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--pop", type=int, default=125, help="ids per Redis call (FastDrainer(pop=))")
    p.add_argument("--redis")
    p.add_argument("--dsn")
    p.add_argument("--namespace", default="benchi", help="Redis key prefix and PostgreSQL schema syncwd_<namespace>")
    args = p.parse_args(argv)
    redis_url, dsn, started = resolve(args.redis, args.dsn)
    client = redis_client(redis_url)
    schema = f"syncwd_{args.namespace}"
    try:
        tables.reset_schema(dsn, schema)
        log(f"writing {args.records:,} {args.width} records")
        _, prefix = drain_run.written(client, redis_url, dsn, args.namespace, args.width, args.records, args.batch)
        log(f"draining them in this process, pops of {args.pop}")
        with CpuMeter(client) as meter:
            report = FastDrainer(client, dsn, prefix=prefix, batch=args.batch, pop=args.pop).drain()
        if report.upserted != args.records or report.exit_code != 0:
            raise RuntimeError(f"the drain upserted {report.upserted} of {args.records}: {report}")
        us = per_row({k: v for k, v in meter.seconds.items() if k != "wall"}, args.records)
        result = {
            "records": args.records,
            "width": args.width,
            "pop": args.pop,
            "rows_per_second": round(args.records / report.seconds, 1),
            # "bench" is this process: the drain
            "cpu_us_per_row": {("drain" if k == "bench" else k): v for k, v in us.items()},
        }
        clear_keys(client, prefix)
        tables.drop_schema(dsn, schema)
    finally:
        for server in started:
            server.close()
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
