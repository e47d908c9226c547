"""``python -m bench``: the write side and the drain against their limits and
the naive way, on the same generated data (see bench/README.md).

    python -m bench --records 1000000 --updates 3 --batch 5000
    python -m bench --sweep batch --sweep records --plot
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from syncwd_fast.keys import validate_identifier

from .data import WIDTHS


def _counts(text: str) -> list[int]:
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--records", type=_positive, default=1_000_000, help="records per width (default 1000000)")
    p.add_argument("--updates", type=_positive, default=3, help="writes per record; the last is final (default 3)")
    p.add_argument("--batch", type=_positive, default=5000, help="drain and limit batch size (default 5000)")
    p.add_argument("--width", choices=[*WIDTHS, "both"], default="both", help="table width (default both)")
    p.add_argument(
        "--naive-sample", type=_positive, default=10_000, help="records for the naive phases (default 10000)"
    )
    p.add_argument(
        "--extras",
        action="store_true",
        help="also the extra figures: write bulk (MSET + SADD without Lua) and limit (Merger)",
    )
    p.add_argument("--chunk", type=_positive, default=10_000, help="rows per update_many call (default 10000)")
    p.add_argument("--workers", type=_positive, default=1, help="drain --workers (default 1)")
    p.add_argument("--partitions", type=_positive, default=1, help="partitions of the bench tables (default 1)")
    p.add_argument("--redis", help="Redis URL [env SYNCWD_REDIS_URL; default local DB 8, else a throwaway server]")
    p.add_argument("--dsn", help="PostgreSQL DSN [env SYNCWD_DSN; default local, else a throwaway server]")
    p.add_argument(
        "--namespace",
        default="bench",
        help="Redis key prefix and PostgreSQL schema syncwd_<namespace>, reset by the run (default bench)",
    )
    p.add_argument("--json-out", type=Path, help="result file (default bench/results/bench-<timestamp>.json)")
    p.add_argument(
        "--sweep",
        action="append",
        choices=["batch", "records"],
        default=[],
        help="instead of the full run: drain and limit per batch size, or drain rate and RSS per record count",
    )
    p.add_argument(
        "--sweep-batches", type=_counts, default=[500, 1000, 5000, 20_000], help="default 500,1000,5000,20000"
    )
    p.add_argument(
        "--sweep-records", type=_counts, default=[100_000, 1_000_000, 3_000_000], help="default 100000,1000000,3000000"
    )
    p.add_argument("--plot", action="store_true", help="draw PNG charts next to the JSON result (needs matplotlib)")
    args = p.parse_args(argv)
    try:
        validate_identifier(f"syncwd_{args.namespace}", "namespace")
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import psutil  # noqa: F401
    except ImportError:
        raise SystemExit("the bench needs psutil: pip install -e '.[bench]' (or ./run bench ...)") from None
    if args.plot:
        from .plot import require

        require()

    from . import plot, report, run, servers, tables

    widths = list(WIDTHS) if args.width == "both" else [args.width]
    json_out: Path = args.json_out or report.default_json_path()
    started_at = time.perf_counter()
    redis_url, dsn, started = servers.resolve(args.redis, args.dsn)
    try:
        client = servers.redis_client(redis_url)
        s = run.Settings(
            redis_url, dsn, args.namespace, args.chunk, args.partitions, args.workers, args.naive_sample, args.extras
        )
        doc: dict[str, Any] = {
            "machine": report.machine(client, dsn),
            "config": {
                **{k: v for k, v in vars(args).items() if k not in ("redis", "dsn", "json_out")},
                "widths": widths,
                "redis": servers.redacted_url(redis_url),
                "dsn": servers.redacted_dsn(dsn),
            },
            "notes": report.NOTES,
            "widths": {},
            "sweeps": {},
        }
        run.log(f"redis {doc['config']['redis']}, postgres {doc['config']['dsn']}, schema {s.schema}")
        tables.reset_schema(dsn, s.schema)
        servers.clear_keys(client, f"{s.namespace}.*")
        try:
            if not args.sweep:
                for width in widths:
                    result = run.run_width(s, client, width, args.records, args.updates, args.batch)
                    doc["widths"][width] = result
                    print(report.width_table(width, result), flush=True)
            if "batch" in args.sweep:
                points = [
                    run.drain_point(s, client, w, args.records, args.updates, b, with_limit=True)
                    for w in widths
                    for b in args.sweep_batches
                ]
                doc["sweeps"]["batch"] = points
                print(report.sweep_table("batch", points), flush=True)
            if "records" in args.sweep:
                points = [
                    run.drain_point(s, client, w, n, args.updates, args.batch, with_limit=False)
                    for w in widths
                    for n in args.sweep_records
                ]
                doc["sweeps"]["records"] = points
                print(report.sweep_table("records", points), flush=True)
        finally:
            servers.clear_keys(client, f"{s.namespace}.*")
            tables.drop_schema(dsn, s.schema)
        doc["total_seconds"] = round(time.perf_counter() - started_at, 1)
        if args.plot:
            doc["plots"] = [str(p) for p in plot.draw(doc, json_out.parent, json_out.stem)]
        report.write_json(json_out, doc)
        print(f"results: {json_out}" + "".join(f"\nplot: {p}" for p in doc.get("plots", [])))
        print(f"total {doc['total_seconds']:.1f} s", file=sys.stderr)
        return 0
    finally:
        for server in started:
            server.close()


if __name__ == "__main__":
    sys.exit(main())
