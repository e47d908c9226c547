"""The fleet benches (bench.scaling, bench.workers) run end to end at a tiny
size on servers of their own, and their CPU meter counts exited children."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from syncwd_fast.servers import _which

ROOT = Path(__file__).resolve().parent.parent


def _run(module: str, out: Path, *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", module, *args, "--json-out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return orjson.loads(out.read_bytes())  # type: ignore[no-any-return]


def _needs_servers() -> None:
    if not (_which("redis-server") and _which("redis-cli") and _which("initdb")):
        pytest.skip("needs redis-server, redis-cli and initdb on PATH")


def test_tree_cpu_counts_a_child_that_exited() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.fleet_run import TreeCpu

    meter = TreeCpu(os.getpid()).start()
    subprocess.run([sys.executable, "-c", "x = 0\nfor i in range(6_000_000): x += i"], check=True)
    assert meter.stop() >= 0.2  # the child's loop, reaped before stop()


def test_scaling_drains_every_cell_on_standalone_and_cluster(tmp_path: Path) -> None:
    _needs_servers()
    doc = _run(
        "bench.scaling", tmp_path / "s.json", "--records", "5000", "--workers", "1,2", "--partitions", "1,4",
        "--rounds", "1", "--batch", "500",
    )  # fmt: skip
    assert set(doc["modes"]) == {"standalone", "cluster"}
    for mode, masters in (("standalone", 1), ("cluster", 3)):
        result = doc["modes"][mode]
        assert set(result["cells"]) == {"p1w1", "p1w2", "p4w1", "p4w2"}
        assert result["limit"]["rows_per_second"] > 0 and result["limit_drain_order"]["rows_per_second"] > 0
        for cell in result["cells"].values():
            (run,) = cell["runs"]
            us = run["cpu_us_per_row"]
            assert cell["rows_per_second"] > 0 and us["drain"] > 0 and us["postgres"] > 0
            assert len(us["redis_each"]) == masters and us["redis"] > 0


def test_workers_compares_threads_and_processes_alternated(tmp_path: Path) -> None:
    _needs_servers()
    doc = _run("bench.workers", tmp_path / "w.json", "--records", "3000", "--n", "2", "--rounds", "2", "--batch", "500")
    sides = doc["n"]["2"]
    assert set(sides) == {"threads", "processes", "processes-watch"}
    for name, side in sides.items():
        assert len(side["runs"]) == 2 and side["rows_per_second"] > 0
        for run in side["runs"]:
            assert sum(run["upserted_each"]) == 3000
            assert len(run["cpu_us_per_row"]["drain_each"]) == (1 if name == "threads" else 2)
