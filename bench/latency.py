"""An application's view of Redis while a phase runs: a separate process
that GETs one key every millisecond and times each reply, as a game server
reading a player's record would. Its p50/p99/max during the drain, against
the same during the limit (which does not touch Redis: the control), show
how long the drain's script calls make others wait. The probe runs at a
real-time priority where it may, so that it times Redis, not its own wait
for a core on a busy machine.

``with GetLatency(redis_url) as probe: ...`` then ``probe.stats``; run as
``python -m bench.latency --redis URL --key KEY --out FILE`` (SIGTERM ends it).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import orjson

INTERVAL_S = 0.001
PROBE_KEY = "bench:latency-probe"


def percentiles(samples_ms: list[float]) -> dict[str, float | int | None]:
    if not samples_ms:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples_ms)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"count": len(ordered), "p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": round(ordered[-1], 3)}


def _own_core() -> bool:
    """Run at a real-time priority where allowed: on a small machine the drain,
    PostgreSQL and Redis keep every core busy, and a probe waiting for a core
    of its own would time its own scheduling, not Redis. The result says
    whether it did (``realtime``)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        return True
    except (PermissionError, OSError, AttributeError):
        return False


def probe(redis_url: str, key: str, out: str) -> None:
    import redis

    realtime = _own_core()
    client = redis.Redis.from_url(redis_url)
    client.set(key, b"x" * 200)
    stop = False

    def ended(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, ended)
    samples: list[float] = []
    with open(out + ".ready", "w"):
        pass
    while not stop:
        t0 = time.perf_counter()
        client.get(key)
        samples.append((time.perf_counter() - t0) * 1000)
        time.sleep(INTERVAL_S)
    client.delete(key)
    with open(out, "wb") as f:
        f.write(orjson.dumps({**percentiles(samples), "realtime": realtime}))


class GetLatency:
    """The probe process for the duration of a ``with`` block."""

    def __init__(self, redis_url: str, key: str = PROBE_KEY) -> None:
        self.redis_url = redis_url
        self.key = key
        self.stats: dict[str, Any] = {}

    def __enter__(self) -> GetLatency:
        self._dir = tempfile.TemporaryDirectory()
        self._out = os.path.join(self._dir.name, "latency.json")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.latency", "--redis", self.redis_url, "--key", self.key, "--out", self._out],
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not os.path.exists(self._out + ".ready"):  # connected and sampling
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the latency probe did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=30)
            with open(self._out, "rb") as f:
                self.stats = orjson.loads(f.read())
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self.stats = {}
        finally:
            self._dir.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--key", default=PROBE_KEY)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    probe(args.redis, args.key, args.out)


if __name__ == "__main__":
    main()
