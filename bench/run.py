"""The bench's phases in order, on one set of generated data per width.

Full run, per width: write naive -> write limit -> update_many (which leaves
the records dirty for the drain) -> limit (into the empty target) -> truncate
-> drain (subprocess, into the same empty target) -> naive (on a sample, into
a table of its own). Sweeps repeat write -> limit -> truncate -> drain.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from syncwd_fast import speedups
from syncwd_fast.discover import registry_epoch
from syncwd_fast.table import Table
from syncwd_fast.writer import Syncwd

from . import data, drain_run, limit, naive, tables, write_side
from .latency import GetLatency
from .measure import CpuMeter, core_each, process_us
from .servers import clear_keys
from .slowlog import ScriptCalls


class BenchError(RuntimeError):
    """A phase produced a wrong result: the figures would mean nothing."""


@dataclass(frozen=True)
class Settings:
    redis_url: str
    dsn: str
    namespace: str  # Redis key prefixes start with it; the PostgreSQL schema is syncwd_<namespace>
    chunk: int  # rows per update_many call / per pipelined round trip
    partitions: int
    workers: int
    naive_sample: int
    extras: bool = False  # also the extra figures: write bulk, limit (Merger)

    @property
    def schema(self) -> str:
        return f"syncwd_{self.namespace}"

    def table(self, width: str, suffix: str = "") -> Table:
        return Table(f"{self.schema}.{width}{suffix}", key="id", partitions=self.partitions)

    def prefix(self, width: str, *parts: str) -> str:
        return ".".join((self.namespace, width, *parts))


def log(message: str) -> None:
    print(time.strftime("%H:%M:%S ") + message, file=sys.stderr, flush=True)


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def _drained_before(s: Settings, client: Any, width: str) -> None:
    """The table registered and drained once while it has no records, untimed:
    the timed drain is then a deployment's next one. A first drain under a
    registry it has not seen (new, or lost and created again) SCANs the whole
    keyspace for tables missing from it, once per registry; every phase here
    starts from a new registry, so without this each timed drain would pay that
    SCAN (about 1 s of redis-server CPU per million keys; bench/README.md)."""
    Syncwd(client, prefix=s.prefix(width)).register(s.table(width))
    result = drain_run.run(client, s.redis_url, s.dsn, s.prefix(width), 5000)
    if result.exit_code != 0 or result.report.get("upserted"):
        raise BenchError(f"the drain before the writes: exit {result.exit_code}: {result.report}")
    if registry_epoch(client, s.prefix(width)).changed:
        raise BenchError("the drain before the writes did not record the registry's epoch")


def _write(
    s: Settings, client: Any, width: str, records: int, updates: int
) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """update_many of every write into the drain's prefix; (timed seconds, CPU,
    the longest Redis calls)."""
    prefix = s.prefix(width)
    clear_keys(client, prefix)
    _drained_before(s, client, width)
    with CpuMeter(client) as meter, ScriptCalls(client, prefix) as logged:
        seconds = write_side.update_many(client, s.table(width), prefix, width, records, updates, s.chunk)
    return seconds, meter.seconds, logged.stats


def _limit(
    s: Settings,
    client: Any,
    width: str,
    records: int,
    batch: int,
    merger: bool = False,
    orders: tuple[list[int] | None, ...] = (None,),
) -> list[tuple[float, dict[str, Any]]]:
    """Merge the final values (read from the drain's prefix, untimed) into the
    empty target, then empty it again for the drain, once per order of
    ``orders`` (None: id order; else a list of ids, limit.drain_order): typed
    tuples by text COPY (the limit), or with ``merger`` the drain's own
    Merger on the JSON (extra). (seconds, CPU) of each."""
    table = s.table(width)
    values = limit.load_values(client, table, s.prefix(width), records)  # the limit's definition: all in memory
    columns = data.column_names(width)
    rows = None if merger else limit.typed_rows(values, columns)
    out = []
    for order in orders:
        if rows is not None and order is not None and sorted(order) != list(range(records)):
            raise BenchError(f"the drain's order holds {len(order)} ids, not each of the {records} records once")
        tables.checkpoint(s.dsn)
        with CpuMeter(client) as meter:
            if rows is None:
                merged, seconds = limit.merge_all(s.dsn, table, values, batch)
            else:
                fed = rows if order is None else [rows[i] for i in order]
                merged, seconds = limit.copy_merge_all(s.dsn, table, fed, columns, batch)
                del fed
        if merged != records or tables.count(s.dsn, table) != records:
            raise BenchError(f"limit merged {merged} rows of {records}")
        tables.truncate(s.dsn, table)
        out.append((seconds, meter.seconds))
    return out


def _drain(
    s: Settings, client: Any, width: str, records: int, batch: int, pure: bool = False, probe_key: str | None = None
) -> tuple[drain_run.DrainRun, dict[str, Any], dict[str, Any]]:
    """The drain subprocess; with ``probe_key``, also an application's GET
    latency and the longest Redis calls while it ran (nothing else in the window)."""
    table = s.table(width)
    tables.checkpoint(s.dsn)
    env = {"SYNCWD_FAST_PURE": "1" if pure else "0"}
    latency: dict[str, Any] = {}
    calls: dict[str, Any] = {}
    if probe_key is None:
        result = drain_run.run(client, s.redis_url, s.dsn, s.prefix(width), batch, s.workers, env=env)
    else:
        with GetLatency(s.redis_url, probe_key) as probe, ScriptCalls(client, s.prefix(width)) as logged:
            result = drain_run.run(client, s.redis_url, s.dsn, s.prefix(width), batch, s.workers, env=env)
        latency, calls = probe.stats, logged.stats
    expected = "python" if pure or not speedups.available() else "c"
    if result.report.get("speedups") != expected:
        raise BenchError(f"the drain ran with speedups {result.report.get('speedups')!r}, not {expected}")
    upserted = result.report.get("upserted")
    if result.exit_code != 0 or upserted != records or tables.count(s.dsn, table) != records:
        raise BenchError(
            f"drain of {table.name}: exit {result.exit_code}, upserted {upserted} of {records}: {result.report}"
            f"\n{result.stderr_tail}"
        )
    clear_keys(client, s.prefix(width))
    return result, latency, calls


def _naive(s: Settings, client: Any, width: str, sample: int, updates: int) -> tuple[int, float, dict[str, Any]]:
    """The sample's final values, written with update_many to a prefix of their
    own, drained the original way into an empty table of their own."""
    table = s.table(width, "_naive")
    prefix = s.prefix(width, "naive")
    tables.create(s.dsn, table, width)
    clear_keys(client, prefix)
    writer = Syncwd(client, prefix=prefix)
    for start in range(0, sample, s.chunk):
        writer.update_many(table, data.rows(width, start, min(start + s.chunk, sample), updates - 1))
    with CpuMeter(client) as meter:
        done, seconds = naive.drain(client, s.dsn, table, prefix)
    clear_keys(client, prefix)
    if done != sample:
        raise BenchError(f"naive drain moved {done} rows of {sample}")
    return done, seconds, meter.seconds


def run_width(s: Settings, client: Any, width: str, records: int, updates: int, batch: int) -> dict[str, Any]:
    """Every figure of one width, all on the same data."""
    writes = records * updates
    sample = min(s.naive_sample, records)
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    cpu: dict[str, dict[str, Any]] = {}
    tables.create(s.dsn, s.table(width), width)

    log(f"{width}: write naive, {sample:,} records one by one")
    prefix = s.prefix(width, "wnaive")
    clear_keys(client, prefix)
    seconds["write_naive"] = write_side.one_by_one(client, s.table(width), prefix, width, sample)
    counts["write_naive"] = sample
    clear_keys(client, prefix)

    log(f"{width}: write limit, {writes:,} pipelined SET + SADD")
    prefix = s.prefix(width, "wlimit")
    clear_keys(client, prefix)
    with CpuMeter(client) as meter:
        seconds["write_limit"] = write_side.pipelined(client, s.table(width), prefix, width, records, updates, s.chunk)
    counts["write_limit"], cpu["write_limit"] = writes, meter.seconds
    clear_keys(client, prefix)

    if s.extras:
        log(f"{width}: write bulk, {writes:,} writes as pipelined MSET + SADD of 1000 records each")
        prefix = s.prefix(width, "wbulk")
        clear_keys(client, prefix)
        with CpuMeter(client) as meter:
            seconds["write_bulk"] = write_side.bulk(client, s.table(width), prefix, width, records, updates, s.chunk)
        counts["write_bulk"], cpu["write_bulk"] = writes, meter.seconds
        clear_keys(client, prefix)

    log(f"{width}: update_many, {writes:,} writes")
    calls: dict[str, dict[str, Any]] = {}  # the longest Redis calls of the phases that call scripts
    seconds["update_many"], cpu["update_many"], calls["update_many"] = _write(s, client, width, records, updates)
    counts["update_many"] = writes

    log(
        f"{width}: limit, {records:,} typed rows by text COPY + INSERT ... ON CONFLICT, from memory, in id order"
        " and in the drain's"
    )
    probe_key = s.prefix(width, "probe") + ":get"
    latency: dict[str, dict[str, Any]] = {}
    # In id order (each row lands next to the last), then the same rows in the
    # key order the drain gives PostgreSQL: its pops' hash order, each batch sorted.
    order = limit.drain_order(client, s.table(width), s.prefix(width), batch)
    with GetLatency(s.redis_url, probe_key) as probe:  # the control: the limit does not touch Redis
        (seconds["limit"], cpu["limit"]), (seconds["limit_drain_order"], cpu["limit_drain_order"]) = _limit(
            s, client, width, records, batch, orders=(None, order)
        )
    latency["limit"] = probe.stats
    counts["limit"] = counts["limit_drain_order"] = records
    del order

    if s.extras:
        log(f"{width}: limit by the drain's Merger (extra), {records:,} JSON values from memory")
        ((seconds["limit_merger"], cpu["limit_merger"]),) = _limit(s, client, width, records, batch, merger=True)
        counts["limit_merger"] = records

    log(f"{width}: drain subprocess, batch {batch}")
    drained, latency["drain"], calls["drain"] = _drain(s, client, width, records, batch, probe_key=probe_key)
    seconds["drain"], counts["drain"], cpu["drain"] = float(drained.report["seconds"]), records, drained.cpu

    log(f"{width}: the same drain on the pure-Python path (SYNCWD_FAST_PURE=1), final values rewritten")
    tables.truncate(s.dsn, s.table(width))
    _drained_before(s, client, width)
    writer = Syncwd(client, prefix=s.prefix(width))
    for start in range(0, records, s.chunk):
        writer.update_many(s.table(width), data.rows(width, start, min(start + s.chunk, records), updates - 1))
    pure, latency["drain_pure"], calls["drain_pure"] = _drain(
        s, client, width, records, batch, pure=True, probe_key=probe_key
    )
    seconds["drain_pure"], counts["drain_pure"], cpu["drain_pure"] = float(pure.report["seconds"]), records, pure.cpu

    log(f"{width}: naive drain, {sample:,} records row by row")
    counts["naive"], seconds["naive"], cpu["naive"] = _naive(s, client, width, sample, updates)

    rates = {phase: _rate(counts[phase], seconds[phase]) for phase in seconds}
    rates["drain"] = round(drained.rate, 1)
    rates["drain_pure"] = round(pure.rate, 1)
    return {
        "records": records,
        "updates": updates,
        "writes": writes,
        "batch": batch,
        "naive_sample": sample,
        "rates": rates,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "counts": counts,
        "ratios": {
            "drain_over_limit": _ratio(rates["drain"], rates["limit"]),
            "drain_over_limit_drain_order": _ratio(rates["drain"], rates["limit_drain_order"]),
            **_per_row_ratios(cpu, counts),
            "drain_over_limit_merger": _ratio(rates["drain"], rates.get("limit_merger", 0.0)),
            "drain_over_drain_pure": _ratio(rates["drain"], rates["drain_pure"]),
            "drain_over_naive": _ratio(rates["drain"], rates["naive"]),
            "update_many_over_write_limit": _ratio(rates["update_many"], rates["write_limit"]),
            "update_many_over_write_bulk": _ratio(rates["update_many"], rates.get("write_bulk", 0.0)),
        },
        "drain": {
            "report": drained.report,
            "exit_code": drained.exit_code,
            "wall_seconds": drained.wall_seconds,
            "peak_rss_mb": drained.peak_rss_mb,
        },
        "cpu_seconds": cpu,
        # per process, in us per record, and their total (measure.process_us)
        "cpu_us_per_row": {
            phase: {k: round(v, 2) for k, v in process_us(c, counts[phase]).items()}
            for phase, c in cpu.items()
            if counts.get(phase)
        },
        # an application's GET, every ms from a separate process, during the phase
        "get_latency": latency,
        # SLOWLOG: the phase's Redis calls over 0.5 ms, by script (or command)
        "redis_calls": calls,
    }


def _per_row_ratios(cpu: dict[str, dict[str, Any]], counts: dict[str, int]) -> dict[str, float | None]:
    """What carries to another machine: the drain against the limit fed its
    key order with a core per process, and PostgreSQL's CPU per row in each."""
    us = {phase: process_us(cpu[phase], counts[phase]) for phase in ("limit", "limit_drain_order", "drain")}
    return {
        "core_each_drain_over_limit_drain_order": _ratio(
            core_each(us["drain"]) or 0.0, core_each(us["limit_drain_order"]) or 0.0
        ),
        "postgres_drain_over_limit_drain_order": _ratio(
            us["drain"].get("postgres", 0.0), us["limit_drain_order"].get("postgres", 0.0)
        ),
        "postgres_drain_over_limit": _ratio(us["drain"].get("postgres", 0.0), us["limit"].get("postgres", 0.0)),
        "total_drain_over_limit_drain_order": _ratio(us["drain"]["total"], us["limit_drain_order"]["total"]),
    }


def drain_point(
    s: Settings, client: Any, width: str, records: int, updates: int, batch: int, with_limit: bool
) -> dict[str, Any]:
    """One sweep point: fresh table, records written, limit (optional), drain."""
    log(f"{width}: sweep point, {records:,} records, batch {batch}")
    tables.create(s.dsn, s.table(width), width)
    _write(s, client, width, records, updates)
    point: dict[str, Any] = {"width": width, "records": records, "updates": updates, "batch": batch}
    if with_limit:
        ((limit_s, _),) = _limit(s, client, width, records, batch)
        point["limit"] = _rate(records, limit_s)
    drained, _, _ = _drain(s, client, width, records, batch)
    point["drain"] = round(drained.rate, 1)
    point["peak_rss_mb"] = drained.peak_rss_mb
    point["cpu_seconds"] = drained.cpu
    if with_limit:
        point["drain_over_limit"] = _ratio(point["drain"], point["limit"])
    return point
