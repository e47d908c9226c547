"""What the fleet benches (bench.scaling, bench.workers) share: private
servers whose every process's CPU can be told apart, and several
``syncwd-fast drain`` processes run at once, each one's CPU and report.

The servers are throwaway ones of the bench's own (a standalone
redis-server, a 3-master Redis Cluster, a PostgreSQL cluster), so each
process's CPU is its own work for this run and nothing else's: on a shared
server another client's work would count too. A process's CPU includes its
children's, the exited ones as well (PostgreSQL's backends end with each
drain): read as in measure.PostgresCpu, from the root's reaped-children times.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import psutil
import redis

from syncwd_fast.connection import redis_from_url
from syncwd_fast.servers import PostgresServer, RedisClusterServers, RedisServer
from syncwd_fast.table import Table
from syncwd_fast.writer import Syncwd

from . import tables, write_side

SCAN_TRIES = 20


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


class TreeCpu:
    """CPU seconds of a process and its descendants between start() and
    stop(), descendants that exited meanwhile included."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self._start: dict[tuple[int, float], float] = {}
        self._reaped0 = 0.0

    def _reaped(self) -> float:
        t = self.root.cpu_times()
        return float(t.children_user + t.children_system)

    def _snapshot(self) -> tuple[dict[tuple[int, float], float], float]:
        for _ in range(SCAN_TRIES):  # a child reaped during the scan would count twice or not at all
            before = self._reaped()
            live = {(self.root.pid, self.root.create_time()): _cpu(self.root)}
            for child in self.root.children(recursive=True):
                try:
                    live[(child.pid, child.create_time())] = _cpu(child)
                except psutil.Error:
                    continue
            after = self._reaped()
            if before == after:
                break
        return live, after

    def start(self) -> TreeCpu:
        self._start, self._reaped0 = self._snapshot()
        return self

    def stop(self) -> float:
        end, reaped = self._snapshot()
        alive = sum(cpu - self._start.get(key, 0.0) for key, cpu in end.items())
        exited = sum(cpu for key, cpu in self._start.items() if key not in end)
        return round(alive + (reaped - self._reaped0) - exited, 4)


@dataclass
class Servers:
    """The bench's own servers: ``redis_url`` (a cluster node's with ``cluster``),
    the redis-server processes to measure, and PostgreSQL's postmaster."""

    mode: str  # "standalone" or "cluster"
    redis_url: str
    dsn: str
    redis_pids: list[int]
    postgres_pid: int
    owned: list[Any] = field(default_factory=list)

    @property
    def cluster(self) -> bool:
        return self.mode == "cluster"

    def client(self) -> Any:
        return redis_from_url(self.redis_url, cluster=self.cluster, timeout_s=120.0)

    def flush(self) -> None:
        """Empty every node (the servers are the bench's own, never a shared one)."""
        for node in self.owned:
            for server in getattr(node, "nodes", [node]):
                if isinstance(server, RedisServer):
                    client = redis.Redis(port=server.port)
                    client.flushall()
                    client.close()

    def close(self) -> None:
        for server in self.owned:
            server.close()


def postmaster_pid(server: PostgresServer) -> int:
    with open(os.path.join(server.data, "postmaster.pid")) as f:
        return int(f.readline())


def start_postgres() -> PostgresServer:
    return PostgresServer().start()


def start(mode: str, postgres: PostgresServer) -> Servers:
    """A private standalone redis-server, or a cluster of 3 masters without
    replicas, beside the private ``postgres``."""
    pg_pid = postmaster_pid(postgres)
    if mode == "standalone":
        server = RedisServer().start()
        assert server.process is not None
        return Servers(mode, server.url, postgres.dsn, [server.process.pid], pg_pid, [server])
    if mode != "cluster":
        raise ValueError(f"unknown mode {mode!r}: standalone or cluster")
    cluster = RedisClusterServers(masters=3).start()
    pids = [n.process.pid for n in cluster.nodes if n.process is not None]
    return Servers(mode, cluster.url, postgres.dsn, pids, pg_pid, [cluster])


@dataclass
class Cpu:
    """CPU seconds of one timed phase: each drain process, each redis-server, PostgreSQL."""

    drains: list[float]
    redis: list[float]
    postgres: float
    wall: float

    def per_row(self, rows: int, startup: float = 0.0) -> dict[str, Any]:
        """Microseconds per row; ``drain_net`` leaves out each drain
        process's start-up (``startup`` CPU seconds, paid once a run)."""
        us = 1e6 / rows if rows else 0.0
        return {
            "drain": round(sum(self.drains) * us, 2),
            "drain_net": round(max(0.0, sum(self.drains) - startup * len(self.drains)) * us, 2),
            "drain_each": [round(c * us, 2) for c in self.drains],
            "redis": round(sum(self.redis) * us, 2),
            "redis_each": [round(c * us, 2) for c in self.redis],
            "postgres": round(self.postgres * us, 2),
            "total": round((sum(self.drains) + sum(self.redis) + self.postgres) * us, 2),
        }


class Meter:
    """``with Meter(servers) as m:`` then ``m.redis``, ``m.postgres``, ``m.wall``."""

    def __init__(self, servers: Servers) -> None:
        self.servers = servers
        self.redis: list[float] = []
        self.postgres = 0.0
        self.wall = 0.0

    def __enter__(self) -> Meter:
        self._redis = [TreeCpu(pid).start() for pid in self.servers.redis_pids]
        self._pg = TreeCpu(self.servers.postgres_pid).start()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t0
        self.redis = [m.stop() for m in self._redis]
        self.postgres = self._pg.stop()


@dataclass
class Drains:
    """Drain processes run at once: their reports, exit codes and CPU."""

    reports: list[dict[str, Any]]
    exit_codes: list[int]
    cpu: Cpu
    stderr: list[str]

    @property
    def upserted(self) -> int:
        return sum(int(r.get("upserted", 0)) for r in self.reports)

    @property
    def seconds(self) -> float:
        """From the first drain's start to the last one's end, Python start-up left out."""
        return max(float(r.get("seconds", 0.0)) for r in self.reports)


def run_drains(
    servers: Servers, prefix: str, batch: int, processes: int, workers: int, extra: tuple[str, ...] = ()
) -> Drains:
    """``processes`` drain subprocesses started together, ``--workers workers`` each."""
    cmd = [sys.executable, "-m", "syncwd_fast", "drain", "--redis", servers.redis_url, "--dsn", servers.dsn]
    cmd += ["--prefix", prefix, "--batch", str(batch), "--workers", str(workers), "--json", *extra]
    if servers.cluster:
        cmd.append("--cluster")
    with contextlib.ExitStack() as files:
        outs = [
            (files.enter_context(tempfile.TemporaryFile()), files.enter_context(tempfile.TemporaryFile()))
            for _ in range(processes)
        ]
        with Meter(servers) as meter:
            procs = [subprocess.Popen(cmd, stdout=o, stderr=e, stdin=subprocess.DEVNULL) for o, e in outs]
            # os.wait4: the CPU of exactly that child, user + system.
            waited = [os.wait4(p.pid, 0) for p in procs]
        for proc, (_, status, _) in zip(procs, waited):
            proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait for it again
        reports, codes, errs, cpus = [], [], [], []
        for (out, err), (_, status, usage) in zip(outs, waited):
            codes.append(os.waitstatus_to_exitcode(status))
            cpus.append(usage.ru_utime + usage.ru_stime)
            out.seek(0)
            err.seek(0)
            lines = out.read().decode(errors="replace").strip().splitlines()
            errs.append(err.read().decode(errors="replace")[-2000:])
            reports.append(orjson.loads(lines[-1]) if lines else {})
    return Drains(reports, codes, Cpu(cpus, meter.redis, meter.postgres, meter.wall), errs)


def written(servers: Servers, client: Any, prefix: str, table: Table, records: int, batch: int) -> float:
    """An empty target, and ``records`` narrow records dirty under ``prefix``,
    the table registered and drained once while empty (untimed): the timed
    drain is a deployment's next one (bench/run.py). Returns that empty
    drain's CPU seconds: a drain process's start-up, paid once per process."""
    tables.create(servers.dsn, table, "narrow")
    Syncwd(client, prefix=prefix).register(table)
    first = run_drains(servers, prefix, batch, 1, 1)
    if first.exit_codes != [0]:
        raise RuntimeError(f"the drain before the writes: {first.reports} {first.stderr}")
    write_side.update_many(client, table, prefix, "narrow", records, 1, 10_000)
    tables.checkpoint(servers.dsn)
    return first.cpu.drains[0]


def landed(result: Drains, servers: Servers, table: Table, records: int, what: str) -> None:
    if any(result.exit_codes) or result.upserted != records or tables.count(servers.dsn, table) != records:
        raise RuntimeError(
            f"{what}: exit {result.exit_codes}, upserted {result.upserted} of {records}: "
            f"{result.reports} {result.stderr}"
        )


def core_each(us: dict[str, Any]) -> float | None:
    """Rows/s with a core for each process: the drain process (start-up
    left out), the busiest Redis master, PostgreSQL's backends on one core."""
    busiest = max(us["drain_net"], max(us["redis_each"]), us["postgres"])
    return round(1e6 / busiest) if busiest else None


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_at_start": [round(x, 2) for x in load],
    }
