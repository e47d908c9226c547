"""``python -m bench.bad_data``: how fast a table drains while some of its
records break a constraint, against the same table drained clean, in one
run, alternated (clean, bad, clean, bad ...), medians.

Each case writes ``--records`` records (one partition) and drains them in
this process with ``FastDrainer`` (batch ``--batch``): ``check1`` and
``check20`` have 1% and 20% of records whose value breaks ``CHECK (v >= 0)``,
``fk20`` has 20% whose ``ref`` names no parent row; ``trigger1`` and
``trigger20`` are ``check1`` and ``check20`` on a table whose BEFORE trigger
refuses a negative value itself (no screen can judge a trigger: halving,
then one record per subtransaction, find them). The figure of merit is
the good rows landed per second of drain, as a ratio to the clean drain's
rows per second (``clean_trigger``, with the trigger, for the trigger
cases); the statements per batch count every statement the sink sent (COPY
included, savepoints and rolled-back ones too).

    python -m bench.bad_data --records 300000 --rounds 1
    python -m bench.bad_data --sink mariadb
    python -m bench.bad_data --cases trigger1,trigger20 --halving-only
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

from syncwd_fast import FastDrainer
from syncwd_fast.sinks.mysql import merge as mysql_merge
from syncwd_fast.sinks.postgres import merge as postgres_merge
from syncwd_fast.table import Table
from syncwd_fast.writer import Syncwd

from .mariadb import MariaDBCpu
from .measure import PostgresCpu, per_row, redis_cpu, self_cpu
from .run import log
from .servers import clear_keys, redis_client, resolve

CASES = {
    "clean": (None, 0.0),
    "check1": ("check", 0.01),
    "check20": ("check", 0.2),
    "fk20": ("fk", 0.2),
    "clean_trigger": ("trigger", 0.0),
    "trigger1": ("trigger", 0.01),
    "trigger20": ("trigger", 0.2),
}
PARENTS = 1000
MYSQL_URL = "mysql://root@127.0.0.1:3306/test"


class StatementCounter:
    """Counts statements a sink sends, by wrapping its driver's cursor."""

    def __init__(self) -> None:
        self.count = 0
        self._undo: list[tuple[Any, str, Any]] = []

    def _wrap(self, cls: Any, name: str) -> None:
        original = getattr(cls, name)
        counter = self

        def counted(*args: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return original(*args, **kwargs)

        setattr(cls, name, counted)
        self._undo.append((cls, name, original))

    def __enter__(self) -> StatementCounter:
        import psycopg

        self._wrap(psycopg.Cursor, "execute")
        self._wrap(psycopg.Cursor, "copy")
        try:
            import pymysql.cursors

            self._wrap(pymysql.cursors.Cursor, "execute")
        except ImportError:
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        for cls, name, original in reversed(self._undo):
            setattr(cls, name, original)


def baseline(case: str) -> str:
    """The clean case a case is measured against: the same table, no bad records."""
    return "clean_trigger" if CASES[case][0] == "trigger" else "clean"


def records(case: str, n: int) -> list[dict[str, Any]]:
    """``n`` records; a case's bad ones spread evenly (every 1/share-th)."""
    kind, share = CASES[case]
    every = round(1 / share) if share else 0
    out = []
    for i in range(n):
        bad = bool(every) and i % every == every // 2
        out.append(
            {
                "id": i,
                "v": -i - 1 if bad and kind in ("check", "trigger") else i,
                "ref": PARENTS + i if bad and kind == "fk" else i % PARENTS,
            }
        )
    return out


class Target:
    """The bench's table in PostgreSQL or MariaDB."""

    def __init__(self, sink: str, dsn: str, mysql_url: str) -> None:
        self.sink = sink
        if sink == "postgres":
            self.dsn = dsn
            self.table = Table("syncwd_bench_bad.t", key="id", partitions=1)
        else:
            self.dsn = mysql_url
            self.table = Table(f"{mysql_url.rsplit('/', 1)[1]}.syncwd_bench_bad", key="id", partitions=1)

    def _sql(self, *statements: str) -> list[Any]:
        if self.sink == "postgres":
            import psycopg

            with psycopg.connect(self.dsn, autocommit=True) as conn:
                got = [conn.execute(s) for s in statements]
                return [g.fetchall() if g.description else None for g in got]
        import pymysql

        from syncwd_fast.sinks.mysql.connection import parse_dsn

        conn = pymysql.connect(**parse_dsn(self.dsn), autocommit=True)
        try:
            out = []
            with conn.cursor() as cur:
                for s in statements:
                    cur.execute(s)
                    out.append(cur.fetchall() if cur.description else None)
            return out
        finally:
            conn.close()

    def reset(self, trigger: bool = False) -> None:
        """The table afresh; ``trigger``: with a BEFORE trigger refusing a
        negative ``v``."""
        if self.sink == "postgres":
            self._sql(
                "DROP SCHEMA IF EXISTS syncwd_bench_bad CASCADE",
                "CREATE SCHEMA syncwd_bench_bad",
                "CREATE TABLE syncwd_bench_bad.parent (id int PRIMARY KEY)",
                f"INSERT INTO syncwd_bench_bad.parent SELECT generate_series(0, {PARENTS - 1})",
                "CREATE TABLE syncwd_bench_bad.t (id bigint PRIMARY KEY, v bigint NOT NULL CHECK (v >= 0),"
                " ref int NOT NULL REFERENCES syncwd_bench_bad.parent)",
            )
            if trigger:
                self._sql(
                    "CREATE FUNCTION syncwd_bench_bad.refuse() RETURNS trigger LANGUAGE plpgsql AS $$"
                    " BEGIN IF NEW.v < 0 THEN RAISE check_violation USING MESSAGE = 'v is negative: ' || NEW.v;"
                    " END IF; RETURN NEW; END $$",
                    "CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON syncwd_bench_bad.t"
                    " FOR EACH ROW EXECUTE FUNCTION syncwd_bench_bad.refuse()",
                )
        else:
            self._sql(
                "DROP TABLE IF EXISTS syncwd_bench_bad",
                "DROP TABLE IF EXISTS syncwd_bench_bad_parent",
                "CREATE TABLE syncwd_bench_bad_parent (id INT PRIMARY KEY) ENGINE=InnoDB",
                "INSERT INTO syncwd_bench_bad_parent SELECT seq FROM seq_0_to_" + str(PARENTS - 1),
                "CREATE TABLE syncwd_bench_bad (id BIGINT PRIMARY KEY, v BIGINT NOT NULL CHECK (v >= 0),"
                " ref INT NOT NULL, FOREIGN KEY (ref) REFERENCES syncwd_bench_bad_parent (id)) ENGINE=InnoDB",
            )
            if trigger:
                self._sql(
                    "CREATE TRIGGER syncwd_bench_bad_refuse BEFORE INSERT ON syncwd_bench_bad FOR EACH ROW"
                    " IF NEW.v < 0 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'v is negative'; END IF",
                    "CREATE TRIGGER syncwd_bench_bad_refuse_update BEFORE UPDATE ON syncwd_bench_bad FOR EACH ROW"
                    " IF NEW.v < 0 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'v is negative'; END IF",
                )

    def rows(self) -> int:
        name = "syncwd_bench_bad.t" if self.sink == "postgres" else "syncwd_bench_bad"
        return int(self._sql(f"SELECT count(*) FROM {name}")[0][0][0])


def run_case(client: Any, target: Target, case: str, args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"{args.namespace}.{case}"
    clear_keys(client, prefix)
    target.reset(trigger=CASES[case][0] == "trigger")
    writer = Syncwd(client, prefix=prefix)
    batch = records(case, args.records)
    for start in range(0, len(batch), 10_000):
        writer.update_many(target.table, batch[start : start + 10_000])
    bad = sum(1 for r in batch if r["v"] < 0 or r["ref"] >= PARENTS)
    drainer = FastDrainer(client, target.dsn, prefix=prefix, batch=args.batch)
    server = PostgresCpu().start() if target.sink == "postgres" else None
    redis0, self0 = redis_cpu(client), self_cpu()
    with StatementCounter() as statements, MariaDBCpu() as mariadb:
        t0 = time.perf_counter()
        report = drainer.drain()
        wall = time.perf_counter() - t0
    cpu = {
        "drain": self_cpu() - self0,
        "redis": redis_cpu(client) - redis0,
        "server": server.stop() if server else mariadb.seconds,
    }
    good = args.records - bad
    if report.upserted != good or report.dead_lettered != bad or target.rows() != good:
        raise RuntimeError(f"{case}: expected {good} rows and {bad} dead letters, got {report.to_dict()}")
    clear_keys(client, prefix)
    batches = math.ceil(args.records / args.batch)
    return {
        "good_rows_per_second": round(good / wall, 1),
        "seconds": round(wall, 3),
        "statements_per_batch": round(statements.count / batches, 1),
        "cpu_us_per_row": per_row(cpu, args.records),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.bad_data", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--records", type=int, default=300_000)
    p.add_argument("--rounds", type=int, default=1, help="clean-bad alternations per case (default 1)")
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--cases", default="check1,check20,fk20")
    p.add_argument("--sink", choices=["postgres", "mariadb"], default="postgres")
    p.add_argument("--redis")
    p.add_argument("--dsn")
    p.add_argument("--mysql", default=os.environ.get("SYNCWD_MYSQL_URL") or MYSQL_URL)
    p.add_argument("--namespace", default="benchbad")
    p.add_argument(
        "--halving-only", action="store_true", help="the sinks never go one record at a time (halving alone)"
    )
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    postgres_merge._Run.ONE_BY_ONE = mysql_merge._Run.ONE_BY_ONE = not args.halving_only
    redis_url, dsn, _ = resolve(args.redis, args.dsn)
    client = redis_client(redis_url)
    target = Target(args.sink, dsn, args.mysql)
    runs: dict[str, list[dict[str, Any]]] = {}
    for case in args.cases.split(","):
        runs.setdefault(baseline(case), [])
        runs[case] = []
        for _ in range(args.rounds):
            for name in (baseline(case), case):  # alternated: the machine's speed drifts
                log(f"{args.sink}: {name}")
                runs[name].append(run_case(client, target, name, args))
                log(f"  {runs[name][-1]}")
    clean = {name: statistics.median(r["good_rows_per_second"] for r in got) for name, got in runs.items()}
    summary: dict[str, Any] = {}
    for name, got in runs.items():
        rate = statistics.median(r["good_rows_per_second"] for r in got)
        summary[name] = {
            "good_rows_per_second": rate,
            "vs_clean": round(rate / clean[baseline(name)], 3),
            "statements_per_batch": statistics.median(r["statements_per_batch"] for r in got),
            "cpu_us_per_row": {
                k: statistics.median(r["cpu_us_per_row"][k] or 0 for r in got) for k in got[0]["cpu_us_per_row"]
            },
            "runs": got,
        }
        log(
            f"{name}: {rate:,.0f} good rows/s = {summary[name]['vs_clean']} x clean,"
            f" {summary[name]['statements_per_batch']} statements/batch"
        )
    doc = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "sink": args.sink,
        "records": args.records,
        "batch": args.batch,
        "one_by_one": not args.halving_only,
        "summary": summary,
    }
    if args.json_out:
        args.json_out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
