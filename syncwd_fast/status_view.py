"""`status` for people: rich tables on a terminal, stable plain lines
elsewhere (scripts grep them), both from the object ``status --json`` prints."""

from __future__ import annotations

import time
from typing import Any

PLAIN_HELD = "  partition {number}: held by {holder}{dead}"
DEAD_NOTE = " (no longer running: the next drain takes it over at once)"


def human_duration(seconds: float | None) -> str:
    """A span as an operator reads it: 0.4s, 45s, 3m 12s, 2h 5m, 3d 4h."""
    if seconds is None:
        return "-"
    if seconds < 10 and not float(seconds).is_integer():
        return f"{max(0.0, seconds):.1f}s"
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    for unit, size, sub, subsize in (("d", 86_400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if whole >= size:
            rest = (whole % size) // subsize
            return f"{whole // size}{unit}" + (f" {rest}{sub}" if rest else "")
    return f"{whole}s"  # unreachable: whole >= 60 here


def human_age(at: float | None, now: float | None = None) -> str:
    """How long ago ``at`` (unix seconds) was: 12s ago, 3m ago, 2h 5m ago."""
    if at is None:
        return "never"
    whole = max(0, int((time.time() if now is None else now) - at))
    if whole < 60:
        return f"{whole}s ago"
    if whole < 3600:
        return f"{whole // 60}m ago"
    return human_duration(whole - whole % 60) + " ago"


def _rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f} rows/s"


def _last_run_text(last: dict[str, Any] | None, now: float) -> str:
    if last is None:
        return "none yet"
    took = "" if last["seconds"] is None else f" in {human_duration(last['seconds'])}"
    return (
        f"finished {human_age(last['finished_at'], now)}: {last['upserted']} upserted, {last['deleted']} deleted,"
        f" {last['dead_lettered']} dead-lettered{took} ({_rate(last['rows_per_second'])})"
    )


def _lease_text(lease: dict[str, Any] | None, now: float) -> str:
    if lease is None:
        return "free"
    state = {True: "alive", False: "dead", None: "alive or dead unknown"}[lease["alive"]]
    since = "" if lease["since"] is None else f", held {human_duration(now - lease['since'])}"
    return f"{lease['holder']} ({state}{since})"


def plain_lines(status: dict[str, Any], now: float | None = None) -> list[str]:
    """The plain form: a line per table, then what it adds; with per-partition
    rows, a line per partition instead of the held-by lines."""
    now = time.time() if now is None else now
    lines = []
    for name, t in status["tables"].items():
        lost = "" if t["registered"] else "; unregistered, found in partition meta: drain --discover registers it"
        lines.append(
            f"{name}: {t['dirty']} dirty, {t['in_run']} in a run, {t['inflight']} in flight, {t['dead']} dead "
            f"({t['partitions']} partitions{lost})"
        )
        if t["last_drained_at"] is not None:
            every = (
                ""
                if t["all_drained_at"] is None
                else f", every partition within {human_duration(int(now - t['all_drained_at']))}"
            )
            lines.append(f"  last drained {human_age(t['last_drained_at'], now)}{every}")
        if t["waiting_since"] is not None:
            lines.append(f"  oldest waiting record: marked dirty at most {human_age(t['waiting_since'], now)}")
        active = t["active"]
        if active["runs"]:
            started = (
                ""
                if active["oldest_started_at"] is None
                else f", oldest started {human_age(active['oldest_started_at'], now)}"
            )
            lines.append(f"  active runs: {active['runs']}, {active['left']} records left{started}")
        if t["last_run"] is not None:
            last = t["last_run"]
            lines.append(f"  last runs ({last['partitions']} partitions): {_last_run_text(last, now)}")
        rows = t.get("per_partition")
        if rows is None:
            for number, holder in sorted(t["leases"].items()):
                dead = DEAD_NOTE if number in t["dead_holders"] else ""
                lines.append(PLAIN_HELD.format(number=number, holder=holder, dead=dead))
            continue
        for row in rows:
            lines.append("  " + _partition_text(row, now))
    return lines


def _partition_text(row: dict[str, Any], now: float) -> str:
    parts = [
        f"partition {row['partition']}: {row['dirty']} dirty, {row['in_run']} in a run, {row['inflight']} in flight,"
        f" {row['dead']} dead"
    ]
    run = row["active_run"]
    if run is not None:
        parts.append(f"run {run['id']} started {human_age(run['started_at'], now)}, {run['left']} left")
    lease = row["lease"]
    if lease is not None:
        parts.append(f"held by {lease['holder']}" + (DEAD_NOTE if lease["alive"] is False else ""))
    parts.append(f"last run: {_last_run_text(row['last_run'], now)}")
    return "; ".join(parts)


def render_rich(status: dict[str, Any], console: Any, now: float | None = None) -> None:
    """A table of the tables, and with per-partition rows a table per table."""
    from rich.markup import escape
    from rich.table import Table as Grid

    now = time.time() if now is None else now
    grid = Grid(title="syncwd-fast status", title_justify="left")
    for column in ("table", "dirty", "in run", "in flight", "dead", "oldest waiting", "active", "leases", "last runs"):
        grid.add_column(column, justify="right" if column in ("dirty", "in run", "in flight", "dead") else "left")
    for name, t in status["tables"].items():
        active = t["active"]
        dead = f" [red]{active['dead_holders']} dead[/red]" if active["dead_holders"] else ""
        grid.add_row(
            escape(name) + ("" if t["registered"] else " [yellow](unregistered)[/yellow]"),
            f"{t['dirty']:,}",
            f"{t['in_run']:,}",
            f"{t['inflight']:,}",
            f"[red]{t['dead']:,}[/red]" if t["dead"] else "0",
            "-" if t["waiting_since"] is None else human_age(t["waiting_since"], now),
            f"{active['runs']} run{'s' * (active['runs'] != 1)}, {active['left']:,} left" if active["runs"] else "-",
            f"{active['leases']}{dead}",
            _last_run_text(t["last_run"], now),
        )
    console.print(grid)
    for name, t in status["tables"].items():
        rows = t.get("per_partition")
        if rows is None:
            continue
        grid = Grid(title=f"{escape(name)}: {t['partitions']} partitions", title_justify="left")
        for column in ("#", "dirty", "in run", "in flight", "dead", "active run", "lease", "last run"):
            grid.add_column(
                column, justify="right" if column in ("#", "dirty", "in run", "in flight", "dead") else "left"
            )
        for row in rows:
            run = row["active_run"]
            lease_text = escape(_lease_text(row["lease"], now))
            grid.add_row(
                str(row["partition"]),
                f"{row['dirty']:,}",
                f"{row['in_run']:,}",
                f"{row['inflight']:,}",
                f"[red]{row['dead']:,}[/red]" if row["dead"] else "0",
                "-"
                if run is None
                else f"{run['id']}, started {human_age(run['started_at'], now)}, {run['left']:,} left",
                f"[red]{lease_text}[/red]" if row["lease"] and row["lease"]["alive"] is False else lease_text,
                _last_run_text(row["last_run"], now),
            )
        console.print(grid)
