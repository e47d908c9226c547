"""Prometheus metrics (--metrics-port, syncwd_fast.metrics.DrainMetrics):
counted as the drain goes, served over HTTP, scraped from a running
`schedule`; a clear usage error without the extra."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.cli import main
from syncwd_fast.errors import ConfigurationError
from syncwd_fast.metrics import DrainMetrics, MetricsServer
from syncwd_fast.servers import free_port

from .helpers import cli, count, last_json, wait_for


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, labels): value} of http://127.0.0.1:port/metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, table: str | None = None) -> float | None:
    return samples.get((name, (("table", table),) if table is not None else ()))


@pytest.fixture
def tables(r, db, schema, prefix):
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY, v int CHECK (v >= 0), ver int)")
    db.execute(f"CREATE TABLE {schema}.b (id int PRIMARY KEY, v int)")
    return Table(f"{schema}.a", partitions=3, version_column="ver"), Table(f"{schema}.b", partitions=2)


def test_counters_gauges_and_histogram_follow_the_drain(r, db, dsn, prefix, tables):
    a, b = tables
    w = Syncwd(r, prefix=prefix)
    db.execute(f"INSERT INTO {a.name} SELECT i, i, 100 FROM generate_series(0, 9) i")  # newer: 10 skipped
    w.update_many(a, [{"id": i, "v": -1 if i % 100 == 50 else i, "ver": 1} for i in range(1000)])  # 10 refused
    for i in range(990, 1000):
        w.delete(a, i)
    w.update_many(b, [{"id": i, "v": i} for i in range(400)])  # not drained: its backlog
    metrics = DrainMetrics(r, prefix)
    before = time.time()
    report = FastDrainer(r, dsn, prefix=prefix, tables=[a.name], batch=64, workers=2, observer=metrics).drain()
    assert report.exit_code == 1
    get = metrics.registry.get_sample_value
    t = {"table": a.name}
    assert get("syncwd_rows_upserted_total", t) == report.upserted == 1000 - 10 - 10 - 10
    assert get("syncwd_rows_deleted_total", t) == report.deleted == 10
    assert get("syncwd_rows_dead_lettered_total", t) == report.dead_lettered == 10
    assert get("syncwd_rows_skipped_total", t) == report.skipped == 10
    batches = get("syncwd_batches_total", t)
    assert batches is not None and batches >= 1000 / 64
    assert get("syncwd_batch_merge_seconds_count", t) == batches
    merged = get("syncwd_batch_merge_seconds_sum", t)
    assert merged is not None and 0 < merged <= report.seconds * 2  # two workers merge at once
    assert get("syncwd_retries_total", t) == 0
    # Read from Redis after the drain: a's backlog is gone, its dead letters wait; b was not drained.
    assert get("syncwd_backlog", t) == 0 and get("syncwd_dead_letters", t) == 10
    assert get("syncwd_backlog", {"table": b.name}) == 400 and get("syncwd_dead_letters", {"table": b.name}) == 0
    end = get("syncwd_last_drain_end_time_seconds")
    assert end is not None and before <= end <= time.time()
    assert get("syncwd_last_drain_exit_code") == 1
    assert get("syncwd_last_drain_duration_seconds") == pytest.approx(report.seconds)
    # A private registry: nothing of ours in the global one.
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("syncwd_rows_upserted_total", t) is None
    assert get("syncwd_dead_letters_dropped_total", t) == 0


def test_dead_letters_dropped_by_the_limits_are_counted(r, db, dsn, prefix, tables):
    a, _ = tables
    Syncwd(r, prefix=prefix).update_many(a, [{"id": i, "v": -1, "ver": 1} for i in range(7)])  # all refused
    metrics = DrainMetrics(r, prefix, [a.name])
    report = FastDrainer(r, dsn, prefix=prefix, tables=[a.name], observer=metrics, dead_letter_max=3).drain()
    assert (report.dead_lettered, report.dead_letters_dropped) == (7, 4)
    get = metrics.registry.get_sample_value
    assert get("syncwd_dead_letters_dropped_total", {"table": a.name}) == 4
    assert get("syncwd_dead_letters", {"table": a.name}) == 3


def test_retries_are_counted_and_the_server_serves_them(dsn):
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    metrics = DrainMetrics(client, "nowhere")
    with metrics.serve(0) as server:  # port 0: any free one
        report = FastDrainer(client, dsn, prefix="nowhere", retries=2, retry_backoff=0.01, observer=metrics).drain()
        assert report.exit_code == 3
        samples = scrape(server.port)
    assert value(samples, "syncwd_retries_total", "") == 2  # before any table: the label is ""
    assert value(samples, "syncwd_last_drain_exit_code") == 3


def test_a_port_in_use_is_a_usage_error(redis_url, dsn, prefix):
    from prometheus_client import CollectorRegistry

    with MetricsServer(CollectorRegistry(), 0) as server:
        with pytest.raises(ConfigurationError, match=f"cannot listen on 127.0.0.1:{server.port}"):  # noqa: SIM117
            MetricsServer(CollectorRegistry(), server.port)
        args = ["drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--metrics-port", str(server.port)]
        out = cli(*args)
        assert out.returncode == 2 and f"cannot listen on 127.0.0.1:{server.port}" in out.stderr, out.stderr


def test_without_the_extra_the_option_is_a_usage_error(redis_url, dsn, prefix, monkeypatch):
    # Hidden as if syncwd-fast[metrics] were not installed: importing it raises ImportError.
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    args = ["--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--metrics-port", str(free_port())]
    for command in (["drain"], ["schedule", "--every", "1s"]):
        done = CliRunner().invoke(main, [*command, *args, "--json"])
        assert done.exit_code == 2, done.output
        assert "--metrics-port needs prometheus-client: pip install 'syncwd-fast[metrics]'" in done.stderr
        assert last_json(done.stdout)["exit_code"] == 2
    # Without the option nothing needs it.
    done = CliRunner().invoke(main, ["drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix])
    assert done.exit_code == 0, done.output

    hide = "import sys; sys.modules['prometheus_client'] = None; from syncwd_fast.cli import main; main()"
    out = subprocess.run(
        [sys.executable, "-c", hide, "drain", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SYNCWD_METRICS_PORT": "0"},
    )
    assert out.returncode == 2 and "pip install 'syncwd-fast[metrics]'" in out.stderr, out.stderr


def test_metrics_port_from_its_variable(r, db, redis_url, dsn, prefix, tables):
    _, b = tables
    Syncwd(r, prefix=prefix).update_many(b, [{"id": i, "v": i} for i in range(20)])
    port = free_port()
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, env={"SYNCWD_METRICS_PORT": str(port)})
    assert out.returncode == 0, out.stderr
    assert f"metrics at http://127.0.0.1:{port}/metrics" in out.stderr
    assert count(db, b.name) == 20


def test_scraped_from_a_running_schedule(r, db, redis_url, dsn, prefix, tables):
    """`schedule --every 1s --metrics-port P` as a real process: its counters
    follow what was written, drain after drain; SIGTERM between drains ends
    it with exit 0."""
    a, b = tables
    w = Syncwd(r, prefix=prefix)
    w.update_many(a, [{"id": i, "v": i, "ver": 1} for i in range(700)])
    w.update_many(b, [{"id": i, "v": i} for i in range(300)])
    port = free_port()
    argv = ["schedule", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--every", "1s", "--batch", "100"]
    child = subprocess.Popen(
        [sys.executable, "-m", "syncwd_fast", *argv, "--metrics-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        latest: dict[Any, float] = {}

        def counted(upserted_a: int, upserted_b: int) -> bool:
            nonlocal latest
            try:
                latest = scrape(port)
            except OSError:  # not listening yet
                return False
            return (
                value(latest, "syncwd_rows_upserted_total", a.name) == upserted_a
                and value(latest, "syncwd_rows_upserted_total", b.name) == upserted_b
                and value(latest, "syncwd_backlog", a.name) == 0
            )

        assert wait_for(lambda: counted(700, 300), timeout=60, interval=0.05), latest
        assert value(latest, "syncwd_rows_dead_lettered_total", a.name) == 0
        assert value(latest, "syncwd_backlog", b.name) == 0 and value(latest, "syncwd_dead_letters", a.name) == 0
        assert (value(latest, "syncwd_batches_total", a.name) or 0) >= 7  # 700 records, batches of 100
        first_end = value(latest, "syncwd_last_drain_end_time_seconds")
        assert first_end is not None and value(latest, "syncwd_last_drain_exit_code") == 0

        # More writes while it runs: the next drains count them too (counters only go up).
        w.update_many(a, [{"id": i, "v": i + 1, "ver": 2} for i in range(250)])
        w.update_many(b, [{"id": i, "v": -i} for i in range(300, 340)])
        assert wait_for(lambda: counted(950, 340), timeout=60, interval=0.05), latest
        end = value(latest, "syncwd_last_drain_end_time_seconds")
        assert end is not None and first_end is not None and end > first_end
        assert count(db, a.name) == 700 and count(db, b.name) == 340

        # SIGTERM between two drains (each waits 1 s after the last one's end): exit 0.
        def just_drained() -> bool:
            samples = scrape(port)
            last = value(samples, "syncwd_last_drain_end_time_seconds") or 0.0
            return time.time() - last < 0.4

        assert wait_for(just_drained, timeout=30, interval=0.02)
        child.send_signal(signal.SIGTERM)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, stderr
    assert "no drain under way; the schedule ends" in stderr
    assert f"{a.name}: 700 rows in " in stdout and f"{b.name}: 300 rows in " in stdout  # the first drain's lines
