"""``python -m bench.redis_cost``: what the drain and the write side cost Redis.

On a private, throwaway redis-server (never the shared one: it is flushed
between phases and every command is logged), for each repetition:

1. write ``--records`` wide values with ``Syncwd.update_many`` (writes/s, and
   the longest ``write.lua`` call from SLOWLOG);
2. drain them with the real ``FastDrainer`` into a private table of a private
   schema in ``--dsn`` (default ``dbname=test``), with the default 7-day TTL;
3. the same with ``ttl=0``.

Per drain phase: redis-server CPU per drained row (``INFO cpu`` and psutil on
the process), ``INFO commandstats`` usec per row of every command (commands a
script runs are counted under their own names, the scripts' own time under
``evalsha``), the time per row of each script (summed from SLOWLOG, which logs
every call with ``slowlog-log-slower-than 0``), and the longest call of each (calls
over ``--slowlog-us`` only, default 100 us: logging every call costs CPU).
The redis-server runs at a real-time priority (SCHED_FIFO) where the bench may
set one, so that other processes taking its core do not stretch its calls.
``--repeat`` runs the whole cycle several times and reports medians: the
machine's speed swings from hour to hour, compare only runs made together.

    python -m bench.redis_cost --records 300000 --repeat 3 [--json-out FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from typing import Any

import orjson
import psutil
import psycopg
from psycopg import sql

from syncwd_fast import scripts
from syncwd_fast.connection import redis_from_url
from syncwd_fast.drain import FastDrainer
from syncwd_fast.servers import RedisServer
from syncwd_fast.table import DEFAULT_TTL, Table
from syncwd_fast.writer import Syncwd

from . import data

SCRIPTS = ("write", "pop", "ack", "snapshot", "lease", "dead", "landing")
CHUNK = 10_000  # rows handed to update_many per call


def _script_names() -> dict[str, str]:
    names = {}
    for name in SCRIPTS:
        try:
            names[scripts.script(name).sha] = name
        except FileNotFoundError:
            continue
    return names


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RedisMeter:
    """Counters of one private redis-server between start() and stop()."""

    def __init__(self, client: Any, pid: int) -> None:
        self.client = client
        self.proc = psutil.Process(pid)
        self.names = _script_names()

    def start(self) -> None:
        self.client.config_resetstat()
        self.client.slowlog_reset()
        info = self.client.info("cpu")
        self.info_cpu0 = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        t = self.proc.cpu_times()
        self.ps_cpu0 = t.user + t.system
        self.t0 = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.t0
        t = self.proc.cpu_times()
        ps_cpu = t.user + t.system - self.ps_cpu0
        info = self.client.info("cpu")
        info_cpu = float(info["used_cpu_sys"]) + float(info["used_cpu_user"]) - self.info_cpu0
        stats = self.client.info("commandstats")
        commands = {
            name.removeprefix("cmdstat_"): {"calls": int(v["calls"]), "usec": int(v["usec"])}
            for name, v in stats.items()
        }
        # Every call since start(): SLOWLOG GET -1 returns the whole log (max-len is set high).
        entries = self.client.execute_command("SLOWLOG", "GET", "-1")
        per_script: dict[str, dict[str, float]] = {}
        for entry in entries:
            duration, args = int(entry[2]), entry[3]
            command = _text(args[0]).lower() if args else "?"
            name = command
            if command in ("evalsha", "eval") and len(args) > 1:
                name = self.names.get(_text(args[1]), "script?") if command == "evalsha" else "eval"
            s = per_script.setdefault(name, {"calls": 0, "usec": 0, "max_usec": 0})
            s["calls"] += 1
            s["usec"] += duration
            s["max_usec"] = max(s["max_usec"], duration)
        return {
            "seconds": seconds,
            "cpu_info_s": info_cpu,
            "cpu_psutil_s": ps_cpu,
            "commands": commands,
            "calls": per_script,
            "logged": len(entries),
        }


def _table(schema: str, ttl: int) -> Table:
    return Table(f"{schema}.cost", key="id", ttl=ttl)


def _reset_table(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}.cost").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE TABLE {}.cost (" + data.COLUMNS["wide"] + ")").format(sql.Identifier(schema)))


def _write(client: Any, meter: RedisMeter, table: Table, records: int) -> dict[str, Any]:
    writer = Syncwd(client)
    writer.register(table)
    seconds = 0.0
    meter.start()
    for rows in data.write_passes("wide", records, 1, CHUNK):
        t0 = time.perf_counter()
        writer.update_many(table, rows)
        seconds += time.perf_counter() - t0
    m = meter.stop()
    write = m["calls"].get("write", {"calls": 0, "usec": 0, "max_usec": 0})
    return {
        "writes_per_s": records / seconds,
        "write_calls": write["calls"],
        "write_max_ms": write["max_usec"] / 1000,
        "write_mean_ms": write["usec"] / max(write["calls"], 1) / 1000,
        "redis_us_per_write": m["cpu_psutil_s"] * 1e6 / records,
    }


def _drain(client: Any, meter: RedisMeter, url: str, dsn: str, table: Table, batch: int) -> dict[str, Any]:
    meter.start()
    drainer = FastDrainer(redis_from_url(url), dsn, batch=batch, tables=[table.name])
    report = drainer.drain()
    m = meter.stop()
    rows = report.upserted + report.deleted + report.skipped + report.dead_lettered
    if report.exit_code != 0 or rows == 0:
        raise SystemExit(f"the drain failed: exit {report.exit_code}, {rows} rows, {report.aborted or ''}")
    commands = {
        name: round(v["usec"] / rows, 3)
        for name, v in sorted(m["commands"].items(), key=lambda kv: -kv[1]["usec"])
        if v["usec"] / rows >= 0.005
    }
    calls = {
        name: {
            "calls": int(v["calls"]),
            "us_per_row": round(v["usec"] / rows, 3),
            "max_ms": round(v["max_usec"] / 1000, 3),
            "mean_ms": round(v["usec"] / v["calls"] / 1000, 3),
        }
        for name, v in sorted(m["calls"].items(), key=lambda kv: -kv[1]["usec"])
    }
    scripts_max = max((v["max_usec"] for k, v in m["calls"].items() if k in SCRIPTS), default=0)
    return {
        "rows": rows,
        "rows_per_s": rows / m["seconds"],
        "redis_us_per_row_psutil": m["cpu_psutil_s"] * 1e6 / rows,
        "redis_us_per_row_info": m["cpu_info_s"] * 1e6 / rows,
        "commandstats_us_per_row": sum(v["usec"] for v in m["commands"].values()) / rows,
        "longest_script_ms": scripts_max / 1000,
        "commands_us_per_row": commands,
        "calls": calls,
    }


def run_once(server: RedisServer, dsn: str, schema: str, records: int, batch: int) -> dict[str, Any]:
    client = redis_from_url(server.url, timeout_s=120.0)
    assert server.process is not None
    meter = RedisMeter(client, server.process.pid)
    result: dict[str, Any] = {}
    for label, ttl in (("ttl7d", DEFAULT_TTL), ("ttl0", 0)):
        client.flushall()
        _reset_table(dsn, schema)
        table = _table(schema, ttl)
        write = _write(client, meter, table, records)
        if label == "ttl7d":
            result["write"] = write
        result[label] = _drain(client, meter, server.url, dsn, table, batch)
    client.close()
    return result


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "writes_per_s": _median([r["write"]["writes_per_s"] for r in runs]),
        "write_max_ms": _median([r["write"]["write_max_ms"] for r in runs]),
        "write_mean_ms": _median([r["write"]["write_mean_ms"] for r in runs]),
        "write_calls": runs[0]["write"]["write_calls"],
    }
    for label in ("ttl7d", "ttl0"):
        phase = [r[label] for r in runs]
        names = sorted({n for p in phase for n in p["commands_us_per_row"]})
        out[label] = {
            "redis_us_per_row_psutil": _median([p["redis_us_per_row_psutil"] for p in phase]),
            "redis_us_per_row_info": _median([p["redis_us_per_row_info"] for p in phase]),
            "commandstats_us_per_row": _median([p["commandstats_us_per_row"] for p in phase]),
            "longest_script_ms": _median([p["longest_script_ms"] for p in phase]),
            "rows_per_s": _median([p["rows_per_s"] for p in phase]),
            "commands_us_per_row": {n: _median([p["commands_us_per_row"].get(n, 0.0) for p in phase]) for n in names},
            "calls": {
                n: {
                    "us_per_row": _median([p["calls"].get(n, {}).get("us_per_row", 0.0) for p in phase]),
                    "max_ms": _median([p["calls"].get(n, {}).get("max_ms", 0.0) for p in phase]),
                    "calls": phase[0]["calls"].get(n, {}).get("calls", 0),
                }
                for n in sorted({n for p in phase for n in p["calls"]})
            },
        }
    return out


def print_summary(s: dict[str, Any], records: int, repeat: int) -> None:
    print(f"\n{records} wide records, median of {repeat} run(s)")
    print(
        f"write side: {s['writes_per_s']:,.0f} writes/s, {s['write_calls']} write.lua calls, "
        f"longest {s['write_max_ms']:.2f} ms, mean {s['write_mean_ms']:.2f} ms"
    )
    for label in ("ttl7d", "ttl0"):
        p = s[label]
        print(
            f"drain {label}: redis-server {p['redis_us_per_row_psutil']:.2f} us/row (psutil), "
            f"{p['redis_us_per_row_info']:.2f} (INFO cpu), commandstats {p['commandstats_us_per_row']:.2f}; "
            f"longest script call {p['longest_script_ms']:.2f} ms; {p['rows_per_s']:,.0f} rows/s"
        )
        print("  commandstats us/row: " + ", ".join(f"{k} {v:.2f}" for k, v in p["commands_us_per_row"].items()))
        print(
            "  per call (SLOWLOG): "
            + ", ".join(
                f"{k} {v['us_per_row']:.2f} us/row max {v['max_ms']:.2f} ms x{v['calls']}"
                for k, v in p["calls"].items()
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--dsn", default=os.environ.get("SYNCWD_DSN", "host=127.0.0.1 port=5432 dbname=test"))
    parser.add_argument("--json-out", default=None)
    parser.add_argument(
        "--slowlog-us",
        type=int,
        default=100,
        help="log calls over this many microseconds (default 100); 0 logs every call, per-call figures"
        " complete but redis-server CPU inflated by the logging",
    )
    args = parser.parse_args(argv)
    schema = "redis_cost_" + uuid.uuid4().hex[:8]
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    # SLOWLOG logs the commands a script runs too: logging every call costs redis-server
    # CPU of its own, so by default only calls over --slowlog-us are logged (the longest
    # call is exact whenever it is over that); --slowlog-us 0 gives every call's time.
    server = RedisServer(
        extra_args=("--slowlog-log-slower-than", str(args.slowlog_us), "--slowlog-max-len", "2000000")
    ).start()
    try:  # a real-time priority where allowed: another process taking its core is not its work
        assert server.process is not None
        os.sched_setscheduler(server.process.pid, os.SCHED_FIFO, os.sched_param(1))
    except (PermissionError, OSError, AttributeError):
        pass
    runs = []
    try:
        for i in range(args.repeat):
            runs.append(run_once(server, args.dsn, schema, args.records, args.batch))
            r = runs[-1]
            d7, d0 = r["ttl7d"], r["ttl0"]
            print(
                f"run {i + 1}: write {r['write']['writes_per_s']:,.0f}/s max {r['write']['write_max_ms']:.2f} ms; "
                f"ttl7d {d7['redis_us_per_row_psutil']:.2f} us/row max {d7['longest_script_ms']:.2f} ms; "
                f"ttl0 {d0['redis_us_per_row_psutil']:.2f} us/row max {d0['longest_script_ms']:.2f} ms",
                file=sys.stderr,
                flush=True,
            )
    finally:
        server.close()
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    s = summary(runs)
    print_summary(s, args.records, args.repeat)
    if args.json_out:
        with open(args.json_out, "wb") as f:
            f.write(orjson.dumps({"records": args.records, "summary": s, "runs": runs}, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
