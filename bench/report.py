"""The bench's output: a table per width for people, one JSON document for
machines (and for the plots)."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

import orjson
import psutil

from .measure import core_each, process_us
from .servers import versions

RESULTS = Path(__file__).resolve().parent / "results"

NOTES = {
    "write_limit": "pipelined SET + SADD (no MULTI) of JSON bytes serialized before the clock starts",
    "write_bulk": "an extra, stronger write limit: the write script's MSET + SADD of 1000 records, without Lua",
    "update_many": "Syncwd.update_many of dicts: serializing them is on the clock, as in an application",
    "write_naive": "one SET and one SADD round trip per record, pre-serialized bytes, on the naive sample",
    "limit": (
        "PostgreSQL's own bulk path: the final rows as typed tuples in memory, text COPY into a kept temp stage"
        " with the target's types, INSERT ... ON CONFLICT DO UPDATE, one connection, no Redis, no project code"
    ),
    "limit_drain_order": (
        "the limit fed the key order the drain gives PostgreSQL: the order its pops read the ids (SSCAN of the dirty"
        " set), cut into batches, each sorted by key; the limit itself runs in id order"
    ),
    "limit_merger": "an extra figure: the drain's own Merger on the final JSON values held in memory",
    "drain": "python -m syncwd_fast drain --json as a subprocess; rate = upserted / the report's seconds",
    "drain_pure": "the same drain on the pure-Python decoder (SYNCWD_FAST_PURE=1), of the final values written again",
    "naive": "the original syncwd: SPOP 500, then per id GET + INSERT ... ON CONFLICT + COMMIT, on the sample",
    "cpu_seconds": (
        "drain = the drain subprocess (os.wait4); bench = this process (row generation included for write phases);"
        " redis = redis-server INFO cpu; postgres = every local postgres process; servers may be shared"
    ),
}

PHASES = [
    ("write_naive", "write naive", "SET + SADD per record, a round trip each (sample)"),
    ("write_limit", "write limit", "pipelined SET + SADD, JSON bytes serialized beforehand"),
    ("write_bulk", "write bulk", "pipelined MSET + SADD of 1000 records per command (extra)"),
    ("update_many", "update_many", "Syncwd.update_many of dicts (serializes on the clock)"),
    ("naive", "naive", "SPOP 500, then GET + upsert + COMMIT per row (sample)"),
    ("limit", "limit", "typed tuples: text COPY + INSERT ON CONFLICT, one connection"),
    ("limit_drain_order", "limit (drain's order)", "the same, the rows in the key order the drain gives PostgreSQL"),
    ("limit_merger", "limit (Merger)", "the drain's Merger on in-memory JSON (extra)"),
    ("drain", "drain", "python -m syncwd_fast drain (subprocess), C speedup"),
    ("drain_pure", "drain (pure)", "the same drain with SYNCWD_FAST_PURE=1"),
]


def machine(client: Any, dsn: str) -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        **versions(client, dsn),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_at_start": [round(x, 2) for x in load] if load else None,
    }


def default_json_path() -> Path:
    return RESULTS / f"bench-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"


def emit(results: dict[str, Any], path: Path | None) -> None:
    """A side bench's result: printed as JSON, and written to ``path`` too when given."""
    text = json.dumps(results, indent=2)
    if path:
        path.write_text(text + "\n")
    print(text)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def width_table(width: str, r: dict[str, Any]) -> str:
    lines = [
        f"{width}: {r['records']:,} records x {r['updates']} updates, batch {r['batch']}, "
        f"naive sample {r['naive_sample']:,}",
        f"  {'phase':<21} {'records/s':>12} {'seconds':>9}  what",
    ]
    for key, label, what in PHASES:
        if key not in r["rates"]:  # an extra figure, not run (--extras)
            continue
        lines.append(f"  {label:<21} {r['rates'][key]:>12,.0f} {r['seconds'][key]:>9.2f}  {what}")
    ratios = r["ratios"]
    merger, bulk = ratios.get("drain_over_limit_merger"), ratios.get("update_many_over_write_bulk")
    lines.append(  # the extras' ratios only where they ran (--extras)
        f"  ratios: drain/limit {_num(ratios['drain_over_limit'], 2)}"
        + (f" (drain/limit-Merger {_num(merger, 2)})" if merger is not None else "")
        + f", drain/naive {_num(ratios['drain_over_naive'])}, "
        f"update_many/write-limit {_num(ratios['update_many_over_write_limit'], 2)}"
        + (f", update_many/write-bulk {_num(bulk, 2)}" if bulk is not None else "")
    )
    for phase in ("limit", "limit_drain_order", "drain", "drain_pure"):
        cpu, count = r["cpu_seconds"].get(phase), r["counts"].get(phase)
        if not cpu or not count:
            continue
        us = process_us(cpu, count)
        each = core_each(us)
        lines.append(
            f"  {phase + ' CPU us/row':<30} "
            + ", ".join(f"{k} {v:.1f}" for k, v in us.items())
            + (f"; a core each: {each:,.0f} rows/s" if each else "")
        )
    if ratios.get("core_each_drain_over_limit_drain_order") is not None:
        each, pg = ratios["core_each_drain_over_limit_drain_order"], ratios["postgres_drain_over_limit_drain_order"]
        lines.append(
            f"  against the limit in the drain's order: a core each, drain/limit {_num(each, 2)};"
            f" PostgreSQL us/row drain/limit {_num(pg, 2)} (id order: {_num(ratios['postgres_drain_over_limit'], 2)});"
            f" total us/row drain/limit {_num(ratios['total_drain_over_limit_drain_order'], 2)}"
        )
    for phase, stats in r.get("get_latency", {}).items():
        if stats.get("count"):
            lines.append(
                f"  {'GET during ' + phase:<22} p50 {stats['p50_ms']:.2f} ms, p99 {stats['p99_ms']:.2f} ms,"
                f" max {stats['max_ms']:.2f} ms ({stats['count']:,} GETs)"
            )
    for phase, stats in r.get("redis_calls", {}).items():
        if "error" in stats:
            lines.append(f"  {'Redis calls, ' + phase:<22} not measured: {stats['error']}")
            continue
        top = ", ".join(f"{name} {c['max_ms']:.2f} ms" for name, c in list(stats["by_call"].items())[:4])
        below = f"< {stats['threshold_ms']:.1f}"
        quantiles = (
            f", p99 {_num(stats['p99_ms'], 2) if stats.get('p99_ms') else below} ms,"
            f" p99.9 {_num(stats['p99_9_ms'], 2) if stats.get('p99_9_ms') else below} ms of {stats['calls']:,}"
            if stats.get("calls")
            else ""
        )
        lines.append(
            f"  {'Redis calls, ' + phase:<22} longest {stats['longest_ms']:.2f} ms, {stats['over_2ms']} over 2 ms"
            + quantiles
            + (f" ({top})" if top else "")
        )
    if "drain_over_drain_pure" in ratios:
        lines.append(f"  drain C / drain pure: {_num(ratios['drain_over_drain_pure'], 2)} in rows/s")
    d = r["drain"]
    lines.append(f"  drain: peak RSS {d['peak_rss_mb']:.1f} MB, subprocess wall {d['wall_seconds']:.2f} s")
    lines.append(f"  {'CPU seconds':<17} {'drain':>8} {'bench':>8} {'redis':>8} {'postgres':>9} {'wall':>8}")
    for phase, cpu in r["cpu_seconds"].items():
        lines.append(
            f"  {phase:<17} {_num(cpu.get('drain'), 2):>8} {_num(cpu['bench'], 2):>8} {_num(cpu['redis'], 2):>8}"
            f" {_num(cpu['postgres'], 2):>9} {_num(cpu['wall'], 2):>8}"
        )
    return "\n".join(lines)


def sweep_table(kind: str, points: list[dict[str, Any]]) -> str:
    lines = [
        f"sweep {kind}:",
        f"  {'width':<7} {'records':>10} {'batch':>6} {'limit/s':>10} {'drain/s':>10}"
        f" {'drain/limit':>11} {'RSS MB':>7}",
    ]
    for p in points:
        lines.append(
            f"  {p['width']:<7} {p['records']:>10,} {p['batch']:>6} {_num(p.get('limit'), 0):>10}"
            f" {_num(p['drain'], 0):>10} {_num(p.get('drain_over_limit'), 2):>11} {p['peak_rss_mb']:>7.1f}"
        )
    return "\n".join(lines)


def median_at(runs: list[dict[str, Any]], *path: str, digits: int = 2) -> float | None:
    """The median of the numbers at ``path`` (keys into nested dicts) across
    ``runs``, skipping runs that lack one; None when none has it."""
    values = []
    for run in runs:
        value: Any = run
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, (int, float)):
            values.append(value)
    return round(statistics.median(values), digits) if values else None
