"""``python -m bench.mariadb``: the drain into MariaDB against MariaDB's own
bulk path on the same rows, in one run, alternated (limit-drain, then
drain-limit), medians with each process's CPU per row.

The limit shares no code with the sink it judges: the final rows, typed in
Python memory before the clock starts (read from the drain's own Redis
values, in key order), go in by ``LOAD DATA LOCAL INFILE`` from an in-memory
file into a temporary table, then ``INSERT ... SELECT ... ON DUPLICATE KEY
UPDATE``, one transaction per batch (the fastest path a helper measured
against multi-row INSERTs and ``executemany``; docs/architecture.md 5.6).

    python -m bench.mariadb --records 200000 --rounds 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path
from typing import Any

import psutil
import pymysql

from syncwd_fast.sinks.mysql.connection import parse_dsn
from syncwd_fast.table import Table
from syncwd_fast.writer import Syncwd

from . import drain_run, write_side
from .data import WIDTHS, column_names
from .limit import load_values
from .measure import medians, per_row
from .report import emit
from .run import log
from .servers import clear_keys, redis_client, resolve

DEFAULT_URL = "mysql://root@127.0.0.1:3306/test"
COLUMNS = {
    "narrow": "id BIGINT PRIMARY KEY, v BIGINT NOT NULL",
    "wide": "id BIGINT PRIMARY KEY, score INT NOT NULL, level INT NOT NULL, name TEXT NOT NULL,"
    " updated_at DATETIME(6) NOT NULL, payload JSON",
}


class MariaDBCpu:
    """CPU seconds of the local mariadbd (or mysqld) between start and stop."""

    def __init__(self) -> None:
        self.procs = [p for p in psutil.process_iter(["name"]) if p.info["name"] in ("mariadbd", "mysqld")]

    def _now(self) -> float | None:
        if not self.procs:
            return None
        return sum(p.cpu_times().user + p.cpu_times().system for p in self.procs)

    def __enter__(self) -> MariaDBCpu:
        self.start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        self.seconds = None if end is None or self.start is None else round(end - self.start, 3)


def connect(url: str, database: str | None, **extra: Any) -> Any:
    args = {**parse_dsn(url), "database": database}
    return pymysql.connect(**args, charset="utf8mb4", autocommit=True, **extra)


def field(value: Any) -> bytes:
    """A value as one field of LOAD DATA's default format."""
    if value is None:
        return b"\\N"
    text = value if isinstance(value, str) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").encode()


def typed(values: list[tuple[str, bytes]], width: str) -> list[tuple[Any, ...]]:
    columns = column_names(width)
    out = []
    for _, doc in values:
        row = json.loads(doc)
        fields = []
        for c in columns:
            v = row.get(c)
            if c == "updated_at" and v is not None:
                v = datetime.datetime.fromisoformat(v).astimezone(datetime.timezone.utc).replace(tzinfo=None)
            elif isinstance(v, (dict, list)):
                v = json.dumps(v, separators=(",", ":"))
            fields.append(v)
        out.append(tuple(fields))
    return out


def limit(url: str, database: str, table: str, width: str, rows: list[tuple[Any, ...]], batch: int) -> dict[str, Any]:
    """MariaDB's bulk path for ``rows``; seconds and CPU per process."""
    columns = column_names(width)
    cols = ", ".join(f"`{c}`" for c in columns)
    sets = ", ".join(f"`{c}` = VALUES(`{c}`)" for c in columns[1:])
    conn = connect(url, database, local_infile=True)
    cur = conn.cursor()
    cur.execute("SET SESSION sql_mode = 'STRICT_ALL_TABLES', time_zone = '+00:00'")
    cur.execute(f"CREATE TEMPORARY TABLE stage LIKE `{table}`")
    conn.autocommit(False)
    fd = os.memfd_create("syncwd-bench-load")
    path = f"/proc/self/fd/{fd}"
    try:
        with MariaDBCpu() as server:
            cpu0, t0 = time.process_time(), time.perf_counter()
            for start in range(0, len(rows), batch):
                data = b"".join(b"\t".join(field(v) for v in row) + b"\n" for row in rows[start : start + batch])
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)
                cur.execute("BEGIN")
                cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE stage CHARACTER SET utf8mb4 ({cols})")
                cur.execute(f"INSERT INTO `{table}` ({cols}) SELECT {cols} FROM stage ON DUPLICATE KEY UPDATE {sets}")
                conn.commit()
                cur.execute("TRUNCATE TABLE stage")
            seconds, client = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        os.close(fd)
        conn.close()
    return {"seconds": seconds, "cpu": {"client": client, "mariadb": server.seconds}}


def count(url: str, database: str, table: str) -> int:
    conn = connect(url, database)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM `{table}`")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def reset(url: str, database: str, table: str, width: str) -> None:
    conn = connect(url, database)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{table}`")
            cur.execute(f"CREATE TABLE `{table}` ({COLUMNS[width]})")
    finally:
        conn.close()


def run_width(client: Any, redis_url: str, url: str, database: str, width: str, args: argparse.Namespace) -> dict:
    table = Table(f"{database}.{width}", key="id", partitions=1)
    prefix = f"{args.namespace}.{width}"
    dsn = url.rsplit("/", 1)[0] + "/" + database
    runs: dict[str, list[dict[str, Any]]] = {"limit": [], "drain": []}
    for round_ in range(args.rounds):
        reset(url, database, width, width)
        clear_keys(client, prefix)
        Syncwd(client, prefix=prefix).register(table)
        drain_run.run(client, redis_url, dsn, prefix, args.batch)  # untimed: the registry settled (bench/run.py)
        write_side.update_many(client, table, prefix, width, args.records, 1, 10_000)
        rows = typed(load_values(client, table, prefix, args.records), width)
        for name in ("limit", "drain") if round_ % 2 == 0 else ("drain", "limit"):
            reset(url, database, width, width)
            log(f"{width}: round {round_ + 1}, {name}")
            if name == "limit":
                got = limit(url, database, width, width, rows, args.batch)
                rate = args.records / got["seconds"]
                cpu = per_row(got["cpu"], args.records)
            else:
                with MariaDBCpu() as server:
                    result = drain_run.run(client, redis_url, dsn, prefix, args.batch)
                if result.exit_code != 0 or result.report.get("upserted") != args.records:
                    raise RuntimeError(f"drain: exit {result.exit_code}: {result.report}\n{result.stderr_tail}")
                rate = result.rate
                cpu = per_row(
                    {"drain": result.cpu["drain"], "redis": result.cpu["redis"], "mariadb": server.seconds},
                    args.records,
                )
            if count(url, database, width) != args.records:
                raise RuntimeError(f"{name} of {width} left {count(url, database, width)} rows of {args.records}")
            runs[name].append({"rows_per_second": round(rate, 1), "cpu_us_per_row": cpu})
        clear_keys(client, prefix)
    summary: dict[str, Any] = {name: medians(got) for name, got in runs.items()}
    summary["drain/limit"] = round(summary["drain"]["rows_per_second"] / summary["limit"]["rows_per_second"], 3)
    log(
        f"{width}: drain/limit {summary['drain/limit']}: limit {summary['limit']['rows_per_second']:,.0f} rows/s"
        f" {summary['limit']['cpu_us_per_row']}, drain {summary['drain']['rows_per_second']:,.0f} rows/s"
        f" {summary['drain']['cpu_us_per_row']} (CPU us/row)"
    )
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.mariadb", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--records", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=2, help="limit-drain then drain-limit rounds (default 2)")
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--width", choices=[*WIDTHS, "both"], default="both")
    p.add_argument("--redis")
    p.add_argument("--mysql", default=os.environ.get("SYNCWD_MYSQL_URL") or DEFAULT_URL, help="a mysql:// URL")
    p.add_argument("--namespace", default="benchm", help="Redis key prefix and database syncwd_<namespace>")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    redis_url, _, started = resolve(args.redis, None)
    client = redis_client(redis_url)
    database = f"syncwd_{args.namespace}"
    admin = connect(args.mysql, None)
    admin.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")
    admin.cursor().execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    results: dict[str, Any] = {"records": args.records, "rounds": args.rounds, "batch": args.batch, "widths": {}}
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT VERSION()")
            results["mariadb"] = cur.fetchone()[0]
        for width in list(WIDTHS) if args.width == "both" else [args.width]:
            results["widths"][width] = run_width(client, redis_url, args.mysql, database, width, args)
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")
        admin.close()
        for server in started:
            server.close()
    emit(results, args.json_out)


if __name__ == "__main__":
    main()
