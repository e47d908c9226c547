"""``syncwd-fast drain`` run as a user runs it: a subprocess whose JSON report,
peak RSS and CPU come back to the bench."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import orjson

from syncwd_fast.table import Table
from syncwd_fast.writer import Syncwd

from . import tables, write_side
from .measure import CpuMeter
from .servers import clear_keys


@dataclass
class DrainRun:
    report: dict[str, Any]  # the drain's own ``--json`` report
    exit_code: int
    wall_seconds: float  # the whole subprocess, Python start-up included
    peak_rss_mb: float
    cpu: dict[str, float | None]  # drain (the subprocess), redis, postgres, bench, wall
    stderr_tail: str

    @property
    def rate(self) -> float:
        seconds = float(self.report["seconds"])
        return float(self.report["upserted"]) / seconds if seconds > 0 else 0.0


def run(
    client: Any,
    redis_url: str,
    dsn: str,
    prefix: str,
    batch: int,
    workers: int = 1,
    timeout: float = 3600,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    extra: tuple[str, ...] = (),
) -> DrainRun:
    """``env``: set in the subprocess's environment (SYNCWD_FAST_PURE=1);
    ``cwd``: where it runs (``python -m`` imports the package found there
    first: another checkout's, for bench.versions); ``extra``: more options
    of ``drain`` (``--pop``)."""
    cmd = [sys.executable, "-m", "syncwd_fast", "drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix]
    cmd += ["--batch", str(batch), "--workers", str(workers), "--json", *extra]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, CpuMeter(client) as meter:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, cwd=cwd
        )
        # os.wait4 returns the CPU of exactly this child (RUSAGE_CHILDREN would
        # sum every child so far); its peak RSS comes from polling VmHWM.
        try:
            status, usage, peak_kb = _wait(proc.pid, timeout)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    lines = stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"drain printed no report (exit {proc.returncode}): {stderr[-2000:]}")
    try:
        report = orjson.loads(lines[-1])
    except orjson.JSONDecodeError as exc:
        raise RuntimeError(f"drain's last line is not JSON (exit {proc.returncode}): {lines[-1][:500]}") from exc
    cpu = {"drain": round(usage.ru_utime + usage.ru_stime, 3), **meter.seconds}
    if peak_kb is None:  # no /proc (macOS): ru_maxrss, in bytes there, which may include the bench's own peak
        peak_kb = usage.ru_maxrss // (1024 if sys.platform == "darwin" else 1)
    return DrainRun(report, proc.returncode, round(wall, 3), round(peak_kb / 1024, 1), cpu, stderr[-2000:])


def _hwm_kb(pid: int) -> int | None:
    """The process's peak RSS so far (VmHWM), in kB; None without /proc."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _wait(pid: int, timeout: float) -> tuple[int, Any, int | None]:
    """Wait for the child: (status, rusage, peak RSS in kB or None).

    Not ru_maxrss: Linux carries the parent's peak into a child at exec, so
    it would report the bench's own memory. VmHWM belongs to the child's
    address space only; it is a high-water mark, so the last read before the
    exit misses at most growth during the final poll interval."""
    deadline = time.monotonic() + timeout
    peak: int | None = None
    while True:
        hwm = _hwm_kb(pid)
        if hwm is not None:
            peak = max(peak or 0, hwm)
        waited, status, usage = os.wait4(pid, os.WNOHANG)
        if waited:
            return status, usage, peak
        if time.monotonic() > deadline:
            raise TimeoutError(f"drain did not finish within {timeout:.0f}s")
        time.sleep(0.01)


def written(
    client: Any,
    redis_url: str,
    dsn: str,
    namespace: str,
    width: str,
    records: int,
    batch: int,
    cwd: str | None = None,
) -> tuple[Table, str]:
    """A fresh table ``syncwd_<namespace>.<width>`` and ``records`` records
    written once under the prefix ``<namespace>.<width>``, for a timed
    drain: the table registered and drained once while empty first (by the
    checkout in ``cwd``), so that the timed drain is a deployment's next one
    (bench/run.py). Returns (table, prefix)."""
    table = Table(f"syncwd_{namespace}.{width}", key="id", partitions=1)
    prefix = f"{namespace}.{width}"
    clear_keys(client, prefix)
    tables.create(dsn, table, width)
    Syncwd(client, prefix=prefix).register(table)
    run(client, redis_url, dsn, prefix, batch, cwd=cwd)
    write_side.update_many(client, table, prefix, width, records, 1, 10_000)
    tables.checkpoint(dsn)
    return table, prefix


def landed(result: DrainRun, dsn: str, table: Table, records: int, what: str) -> None:
    """Raise unless the drain exited 0 having upserted every record into ``table``."""
    if result.exit_code != 0 or result.report.get("upserted") != records or tables.count(dsn, table) != records:
        raise RuntimeError(f"{what}: exit {result.exit_code}: {result.report}\n{result.stderr_tail}")
