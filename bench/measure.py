"""CPU seconds of the processes a phase keeps busy, to tell which one is the
bottleneck: redis-server (its own ``INFO cpu`` counters), PostgreSQL (every
local ``postgres`` process, read from /proc with psutil), and this process.
A drain subprocess adds its own CPU and peak RSS from ``os.wait4``."""

from __future__ import annotations

import resource
import statistics
import time
from typing import Any

import psutil

SCAN_TRIES = 20


def redis_cpu(client: Any) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class PostgresCpu:
    """CPU used by local ``postgres`` processes between start() and stop().

    Backends exit during a phase (the drain's own backend ends with the
    drain), so a before/after sum of live processes would miss their CPU. The
    postmaster reaps every backend, and the kernel adds a reaped child's CPU
    to its parent's children times: live processes' deltas plus the
    postmaster's children delta, minus what exited processes had already used
    at the start, is exact without polling."""

    def __init__(self) -> None:
        self._start: dict[tuple[int, float], float] = {}
        self._children0 = 0.0

    @staticmethod
    def _scan() -> tuple[dict[tuple[int, float], float], dict[int, psutil.Process]]:
        """CPU of each live postgres process, and the postmasters."""
        own: dict[tuple[int, float], float] = {}
        procs: dict[int, psutil.Process] = {}
        parents: dict[int, int] = {}
        for proc in psutil.process_iter():
            try:
                if proc.name() != "postgres":
                    continue
                times = proc.cpu_times()
                key = (proc.pid, proc.create_time())  # a reused pid is another process
                parents[proc.pid] = proc.ppid()
            except psutil.Error:  # gone meanwhile
                continue
            own[key] = times.user + times.system
            procs[proc.pid] = proc
        # Postmasters: postgres processes whose parent is not one (several clusters may run).
        return own, {pid: p for pid, p in procs.items() if parents[pid] not in parents}

    @staticmethod
    def _reaped(postmasters: dict[int, psutil.Process]) -> float:
        total = 0.0
        for proc in postmasters.values():
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.children_user + times.children_system
        return total

    @classmethod
    def _snapshot(cls) -> tuple[dict[tuple[int, float], float], float]:
        """A consistent (live CPU, reaped CPU): a backend reaped while the scan
        runs would be counted in both or in neither, so scan again until the
        postmasters' children times did not move during the scan."""
        own, postmasters = cls._scan()
        for _ in range(SCAN_TRIES):
            before = cls._reaped(postmasters)
            own, found = cls._scan()
            after = cls._reaped(found)
            if found.keys() == postmasters.keys() and before == after:
                break
            postmasters = found
        return own, after

    def start(self) -> PostgresCpu:
        self._start, self._children0 = self._snapshot()
        return self

    def stop(self) -> float | None:
        """CPU seconds, or None when no local PostgreSQL process was seen (a remote server)."""
        end, children1 = self._snapshot()
        if not end and not self._start:
            return None
        alive = sum(cpu - self._start.get(key, 0.0) for key, cpu in end.items())
        exited = sum(cpu for key, cpu in self._start.items() if key not in end)
        return round(alive + (children1 - self._children0) - exited, 3)


class CpuMeter:
    """``with CpuMeter(redis) as m: ...`` then ``m.seconds``: CPU seconds of
    redis-server, PostgreSQL and this process (``bench``), and the wall time.
    Both servers may be shared: other clients' work counts too."""

    def __init__(self, redis_client: Any) -> None:
        self.redis = redis_client
        self.seconds: dict[str, float | None] = {}

    def __enter__(self) -> CpuMeter:
        self._pg = PostgresCpu().start()
        self._redis0 = redis_cpu(self.redis)
        self._self0 = self_cpu()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._wall0
        self.seconds = {
            "bench": round(self_cpu() - self._self0, 3),
            "redis": round(redis_cpu(self.redis) - self._redis0, 3),
            "postgres": self._pg.stop(),
            "wall": round(wall, 3),
        }


def per_row(seconds: dict[str, float | None], records: int) -> dict[str, float | None]:
    """CPU seconds per process as microseconds per row (None where not measured)."""
    return {k: (round(v * 1e6 / records, 2) if isinstance(v, (int, float)) else None) for k, v in seconds.items()}


PROCESSES = ("drain", "bench", "redis", "postgres")


def process_us(cpu: dict[str, Any], count: int) -> dict[str, float]:
    """A phase's CPU seconds per process (CpuMeter's, and the drain
    subprocess's) as microseconds per record, and ``total``: the client (the
    drain; for the limits, this bench process), Redis and PostgreSQL."""
    out = {k: v for k, v in per_row({k: cpu.get(k) for k in PROCESSES}, count).items() if v is not None}
    client = "drain" if "drain" in out else "bench"
    out["total"] = sum(out[k] for k in (client, "redis", "postgres") if k in out)
    return out


def core_each(us: dict[str, float]) -> float | None:
    """The rows/s a phase would reach with a core per process: 1e6 / the
    busiest one's us per row (``process_us``)."""
    busiest = max((v for k, v in us.items() if k != "total"), default=0.0)
    return round(1e6 / busiest, 1) if busiest else None


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Alternated runs of one side (each ``rows_per_second`` and
    ``cpu_us_per_row``) summed up by their medians, the runs kept."""
    keys = runs[0]["cpu_us_per_row"].keys()
    return {
        "rows_per_second": statistics.median(r["rows_per_second"] for r in runs),
        "cpu_us_per_row": {
            k: statistics.median(r["cpu_us_per_row"][k] for r in runs)
            for k in keys
            if all(r["cpu_us_per_row"].get(k) is not None for r in runs)
        },
        "runs": runs,
    }
