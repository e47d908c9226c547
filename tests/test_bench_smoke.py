"""The bench runs end to end at a tiny size and writes a complete result."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent
RATES = ("write_naive", "write_limit", "update_many", "naive", "limit", "limit_drain_order", "drain")
# The processes a phase's total CPU per row sums: its client (the drain; the
# limits run in the bench process), Redis and PostgreSQL.
CLIENT = {
    "limit": ("bench", "redis", "postgres"),
    "limit_drain_order": ("bench", "redis", "postgres"),
    "drain": ("drain", "redis", "postgres"),
    "drain_pure": ("drain", "redis", "postgres"),
}
RATIOS = (
    "drain_over_limit",
    "drain_over_limit_drain_order",
    "core_each_drain_over_limit_drain_order",
    "postgres_drain_over_limit_drain_order",
    "total_drain_over_limit_drain_order",
    "drain_over_naive",
    "update_many_over_write_limit",
)


def _bench(
    redis_url: str, base_dsn: str, out: Path | None, *args: str, module: str = "bench", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m bench`` (or another ``module`` of it) under a namespace of
    its own (key prefix and schema, removed by the bench), its result in ``out``."""
    namespace = "bt" + uuid.uuid4().hex[:10]
    done = subprocess.run(
        [sys.executable, "-m", module, *args, "--namespace", namespace, *(["--json-out", str(out)] if out else [])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "SYNCWD_REDIS_URL": redis_url, "SYNCWD_DSN": base_dsn},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_bench_smoke(redis_url: str, base_dsn: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    before = redis.Redis.from_url(redis_url).config_get("slowlog-*")
    args = ["--records", "3000", "--updates", "2", "--batch", "500", "--naive-sample", "300", "--width", "both"]
    done = _bench(redis_url, base_dsn, out, *args, "--extras")  # the extra figures too
    doc = orjson.loads(out.read_bytes())
    assert set(doc["widths"]) == {"narrow", "wide"}
    for width, result in doc["widths"].items():
        for rate in (*RATES, "write_bulk", "limit_merger"):  # the extras too
            assert result["rates"][rate] > 0, (width, rate)
        assert result["drain"]["report"]["upserted"] == 3000, width
        assert result["drain"]["exit_code"] == 0, width
        for ratio in RATIOS:
            assert result["ratios"][ratio] is not None and result["ratios"][ratio] > 0, (width, ratio)
        assert result["drain"]["peak_rss_mb"] > 0
        for phase in ("limit", "limit_drain_order", "drain", "drain_pure"):
            us = result["cpu_us_per_row"][phase]
            assert us["total"] == pytest.approx(sum(v for k, v in us.items() if k in CLIENT[phase]), abs=0.02), phase
        for phase in ("limit", "drain", "drain_pure"):
            assert result["get_latency"][phase]["count"] > 0, (width, phase)
        for phase in ("update_many", "drain", "drain_pure"):
            calls = result["redis_calls"][phase]
            assert calls["longest_ms"] >= 0 and calls["over_2ms"] >= 0, (width, phase, calls)
            assert calls["calls"] > 0 and "p99_9_ms" in calls, (width, phase, calls)
    for fact in ("cpu_count", "python", "redis", "postgres", "date"):
        assert doc["machine"][fact], fact
    assert "narrow:" in done.stdout and "drain/limit" in done.stdout and "Redis calls, drain" in done.stdout
    assert "limit (drain's order)" in done.stdout and "a core each, drain/limit" in done.stdout
    config = redis.Redis.from_url(redis_url).config_get("slowlog-*")
    assert config == before, "the bench put the server's SLOWLOG settings back"


SPIN = """
local t0 = redis.call('TIME')
local start = tonumber(t0[1]) * 1e6 + tonumber(t0[2])
repeat
  local t = redis.call('TIME')
until tonumber(t[1]) * 1e6 + tonumber(t[2]) - start >= tonumber(ARGV[1])
return redis.call('GET', KEYS[1])
"""


def test_script_calls_count_the_phases_own_slow_calls_only(private_redis) -> None:
    """bench.slowlog, logging every call: a 3 ms and a 1 ms script call and a
    GET on the bench's keys count, the commands the scripts ran are kept
    apart, and another client's slow call, or one logged before the phase,
    does not count; the settings are put back."""
    from bench.slowlog import ScriptCalls

    client = redis.Redis.from_url(private_redis.url)
    client.config_set("slowlog-log-slower-than", 0)
    client.eval(SPIN, 1, "bench.wide:{t:0}:v:1", 3000)  # before the phase
    before = client.config_get("slowlog-*")
    with ScriptCalls(client, "bench.wide", threshold_us=0) as calls:
        client.eval(SPIN, 1, "bench.wide:{t:0}:v:1", 3000)
        client.eval(SPIN, 1, "bench.wide:{t:0}:v:2", 1000)
        client.eval(SPIN, 1, "other:{t:0}:v:1", 5000)
        client.get("bench.wide:{t:0}:v:3")
    assert client.config_get("slowlog-*") == before
    stats = calls.stats
    assert {name: c["count"] for name, c in stats["by_call"].items()} == {"eval": 2, "get": 1}
    assert {name: c["count"] for name, c in stats["in_scripts"].items()} == {"get": 2}  # the scripts' own GETs
    assert stats["by_call"]["eval"]["max_ms"] == stats["longest_ms"]
    # A spin lasts at least its time, more when the machine is busy: the other client's 50 ms is well apart.
    assert 3.0 <= stats["longest_ms"] < 50.0 and stats["over_2ms"] == 1


def test_redis_floor_reads_every_value_and_gives_the_ttl(tmp_path: Path) -> None:
    """bench.redis_floor on its own throwaway server: every variant reads each
    record once (SSCAN and MGET per chunk), the TTL variants run one PEXPIREAT
    per record (pipelined, or inside the script, at once or a batch later),
    and the figures are written."""
    out = tmp_path / "floor.json"
    records = 3000
    done = subprocess.run(
        [sys.executable, "-m", "bench.redis_floor", "--records", str(records), "--repeat", "2", "--pop", "100"]
        + ["--batch", "1000", "--width", "narrow", "--json-out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = orjson.loads(out.read_bytes())
    variants = doc["results"]["narrow"]
    assert set(variants) == {"read", "read+ttl", "read+ttl lua", "read+ttl later"}
    for variant, runs in variants.items():
        assert len(runs) == 2, variant
        for run in runs:
            assert run["rows"] == records, variant
            assert run["expiring"] == (0 if variant == "read" else records), variant  # every value got its TTL
            commands = run["commands_us_per_row"]
            assert commands["sscan"] > 0 and commands["mget"] > 0, (variant, commands)
            assert ("pexpireat" in commands) == (variant != "read"), (variant, commands)
            assert ("evalsha" in commands) == (variant in ("read+ttl lua", "read+ttl later")), (variant, commands)
    assert "redis-server CPU per row" in done.stdout and "read+ttl later" in done.stdout


def test_bench_without_extras_skips_them(redis_url: str, base_dsn: str, tmp_path: Path) -> None:
    """The default run leaves the extra figures out (they took a quarter of
    its time) and still reports every other one."""
    out = tmp_path / "bench.json"
    args = ["--records", "2000", "--updates", "1", "--batch", "500", "--naive-sample", "200", "--width", "narrow"]
    done = _bench(redis_url, base_dsn, out, *args)
    result = orjson.loads(out.read_bytes())["widths"]["narrow"]
    assert "write_bulk" not in result["rates"] and "limit_merger" not in result["rates"]
    assert result["ratios"]["update_many_over_write_bulk"] is None
    for rate in RATES:
        assert result["rates"][rate] > 0, rate
    assert "write bulk" not in done.stdout and "limit (Merger)" not in done.stdout and "write-bulk" not in done.stdout
    assert "drain/limit" in done.stdout


def test_versions_compares_two_checkouts_in_one_run(redis_url: str, base_dsn: str, tmp_path: Path) -> None:
    """bench.versions checks the other commit out in a worktree, builds it and
    drains the same data with each, alternating; each drain imports its own
    checkout's package."""
    out = tmp_path / "versions.json"
    namespace = "bv" + uuid.uuid4().hex[:10]
    done = subprocess.run(
        [sys.executable, "-m", "bench.versions", "--before", "HEAD", "--records", "2000", "--rounds", "2"]
        + ["--width", "narrow", "--batch", "500", "--namespace", namespace, "--json-out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SYNCWD_REDIS_URL": redis_url, "SYNCWD_DSN": base_dsn},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    doc = orjson.loads(out.read_bytes())
    before, after = doc["imported"]["before"], doc["imported"]["after"]
    assert before.startswith(tempfile_root()) and after.startswith(str(ROOT / "syncwd_fast")), doc["imported"]
    narrow = doc["widths"]["narrow"]
    for name in ("before", "after"):
        assert len(narrow[name]["runs"]) == 2 and narrow[name]["rows_per_second"] > 0, name
        assert narrow[name]["cpu_us_per_row"]["drain"] > 0, name
    assert narrow["after/before"] > 0
    worktrees = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True).stdout
    assert "syncwd-before-" not in worktrees  # removed again


def test_pop_sizes_drains_the_same_data_with_each_pop_size(redis_url: str, base_dsn: str, tmp_path: Path) -> None:
    """bench.pop_sizes: a drain per size and round, each with its CPU per row
    and its Redis calls counted."""
    out = tmp_path / "pops.json"
    args = ["--records", "2000", "--pops", "50,200", "--rounds", "2", "--batch", "500"]
    _bench(redis_url, base_dsn, out, *args, module="bench.pop_sizes", timeout=300)
    narrow = orjson.loads(out.read_bytes())["widths"]["narrow"]
    assert set(narrow) == {"50", "200"}
    for size in ("50", "200"):
        assert len(narrow[size]["runs"]) == 2 and narrow[size]["rows_per_second"] > 0, size
        assert narrow[size]["cpu_us_per_row"]["drain"] > 0, size
        # (the server's count: on a shared server other clients' calls too)
        assert all(run["calls"]["calls"] > 0 for run in narrow[size]["runs"]), size


def tempfile_root() -> str:
    import tempfile

    return tempfile.gettempdir()


def test_mariadb_bench_runs_the_limit_and_the_drain_alternated(redis_url: str, mysql_url: str, tmp_path: Path) -> None:
    """bench.mariadb at a tiny size: both phases land every row, each round,
    with CPU per row of each process, and the database it made is gone."""
    out = tmp_path / "mariadb.json"
    namespace = "bm" + uuid.uuid4().hex[:10]
    done = subprocess.run(
        [sys.executable, "-m", "bench.mariadb", "--records", "2000", "--rounds", "2", "--batch", "500"]
        + ["--width", "wide", "--mysql", mysql_url, "--namespace", namespace, "--json-out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SYNCWD_REDIS_URL": redis_url},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    wide = orjson.loads(out.read_bytes())["widths"]["wide"]
    assert len(wide["limit"]["runs"]) == len(wide["drain"]["runs"]) == 2
    assert wide["limit"]["cpu_us_per_row"]["client"] > 0 and wide["drain"]["cpu_us_per_row"]["drain"] > 0
    assert wide["drain/limit"] > 0
    import pymysql

    from syncwd_fast.sinks.mysql.connection import parse_dsn

    conn = pymysql.connect(**{**parse_dsn(mysql_url), "database": None})
    with conn.cursor() as cur:
        assert not cur.execute("SHOW DATABASES LIKE %s", (f"syncwd_{namespace}",))
    conn.close()


def test_call_quantiles_are_the_kth_longest_logged_call() -> None:
    from bench.slowlog import ScriptCalls

    calls = ScriptCalls(None, "p")
    calls._calls = 2000  # nearest rank: p99.9 is the 1998th shortest, the 3rd longest; p99 the 21st longest
    logged = [9.0, 4.0, 3.0, *[1.0] * 17, 0.7, 0.6]
    assert calls._percentile(logged, 0.999) == 3.0
    assert calls._percentile(logged, 0.99) == 0.7
    calls._calls = 5000  # p99: the 51st longest, not logged: under the threshold
    assert calls._percentile(logged, 0.99) is None
    calls._calls = 0
    assert calls._percentile(logged, 0.999) is None


def test_in_process_drains_its_records_and_says_each_process_cpu(redis_url: str, base_dsn: str) -> None:
    """bench.in_process (for profilers): the drain in this process, its CPU counted as the drain's."""
    args = ["--records", "2000", "--pop", "50", "--batch", "500"]
    done = _bench(redis_url, base_dsn, None, *args, module="bench.in_process")
    result = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert (result["records"], result["pop"]) == (2000, 50) and result["rows_per_second"] > 0
    assert result["cpu_us_per_row"]["drain"] > 0 and "bench" not in result["cpu_us_per_row"]
