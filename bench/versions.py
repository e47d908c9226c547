"""``python -m bench.versions --before REF``: the drain of this checkout
against the drain of another commit (before a refactor), in one run, on the
same data: alternated A-B / B-A, medians reported with each process's CPU
per row.

The other commit is checked out in a temporary git worktree and its C
speedup built in place with this Python; its drain runs as a subprocess from
there (``python -m syncwd_fast`` imports the package of its working
directory first), this checkout's from here. Both write the same key layout,
so one writer (this checkout's ``update_many``) feeds both.

    python -m bench.versions --before 232c360 --records 200000 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import drain_run, tables
from .data import WIDTHS
from .measure import medians, per_row
from .report import emit
from .run import log
from .servers import clear_keys, redis_client, resolve

ROOT = Path(__file__).resolve().parent.parent


def checkout(ref: str, into: Path) -> Path:
    """``ref`` as a detached worktree with its C speedup built in place."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(into), ref], check=True)
    env = {k: v for k, v in os.environ.items() if k != "SYNCWD_FAST_STRICT_BUILD"}
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=into,
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return into


def imported_from(cwd: Path) -> str:
    """Where ``python -m syncwd_fast`` run in ``cwd`` takes the package from."""
    out = subprocess.run(
        [sys.executable, "-c", "import syncwd_fast, syncwd_fast.speedups as s; print(syncwd_fast.__file__, s.ACTIVE)"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def one(
    client: Any,
    redis_url: str,
    dsn: str,
    namespace: str,
    width: str,
    records: int,
    batch: int,
    cwd: Path,
    name: str,
) -> dict[str, Any]:
    table, prefix = drain_run.written(client, redis_url, dsn, namespace, width, records, batch, cwd=str(cwd))
    result = drain_run.run(client, redis_url, dsn, prefix, batch, cwd=str(cwd))
    drain_run.landed(result, dsn, table, records, f"{name} drain of {width}")
    clear_keys(client, prefix)
    us = per_row(result.cpu, records)
    return {"rows_per_second": round(result.rate, 1), "cpu_us_per_row": us, "speedups": result.report.get("speedups")}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.versions", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--before", required=True, help="the git commit to compare with (e.g. the one before a refactor)")
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=2, help="A-B then B-A rounds (default 2)")
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--width", choices=[*WIDTHS, "both"], default="both")
    p.add_argument("--redis")
    p.add_argument("--dsn")
    p.add_argument("--json-out", type=Path)
    p.add_argument(
        "--namespace",
        default="benchv",
        help="Redis key prefix and PostgreSQL schema syncwd_<namespace> (default benchv)",
    )
    args = p.parse_args(argv)
    redis_url, dsn, started = resolve(args.redis, args.dsn)
    client = redis_client(redis_url)
    schema = f"syncwd_{args.namespace}"
    widths = list(WIDTHS) if args.width == "both" else [args.width]
    results: dict[str, Any] = {"before": args.before, "records": args.records, "widths": {}}
    with tempfile.TemporaryDirectory(prefix="syncwd-before-") as tmp:
        old = checkout(args.before, Path(tmp) / "before")
        try:
            sources = {"before": old, "after": ROOT}
            results["imported"] = {name: imported_from(path) for name, path in sources.items()}
            log(f"importing: {results['imported']}")
            tables.reset_schema(dsn, schema)
            for width in widths:
                runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
                for round_ in range(args.rounds):
                    order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
                    for name in order:
                        log(f"{width}: round {round_ + 1}, {name}")
                        runs[name].append(
                            one(
                                client,
                                redis_url,
                                dsn,
                                args.namespace,
                                width,
                                args.records,
                                args.batch,
                                sources[name],
                                name,
                            )
                        )
                summary: dict[str, Any] = {name: medians(got) for name, got in runs.items()}
                summary["after/before"] = round(
                    summary["after"]["rows_per_second"] / summary["before"]["rows_per_second"], 3
                )
                results["widths"][width] = summary
                log(
                    f"{width}: after/before {summary['after/before']}: "
                    + ", ".join(
                        f"{n} {summary[n]['rows_per_second']:,.0f} rows/s, CPU us/row {summary[n]['cpu_us_per_row']}"
                        for n in ("before", "after")
                    )
                )
            tables.drop_schema(dsn, schema)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)
            for server in started:
                server.close()
    emit(results, args.json_out)


if __name__ == "__main__":
    main()
