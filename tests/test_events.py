"""FastDrainer(observer=...): what a drain tells an observer, against the
real servers: runs with their snapshot sizes, batches whose counts add up to
the report's (faults and several workers included), retries, and the ends of
partitions and of the drain."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest
import redis as redis_lib

from syncwd_fast import FastDrainer, Syncwd, Table, scripts
from syncwd_fast.events import BatchDone, DrainObserver
from syncwd_fast.partition import PartitionResult
from syncwd_fast.report import DrainReport

from .helpers import count


class Recorder(DrainObserver):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[dict[str, int]] = []
        self.runs: list[tuple[str, int, str, int, bool]] = []
        self.batches: list[BatchDone] = []
        self.retries: list[tuple[str | None, str]] = []
        self.finished: list[tuple[str, int, PartitionResult]] = []
        self.reports: list[DrainReport] = []
        self.threads: set[str] = set()

    def drain_started(self, tables: Mapping[str, int]) -> None:
        self.started.append(dict(tables))

    def run_started(self, table: str, partition: int, run: str, size: int, adopted: bool) -> None:
        with self.lock:
            self.runs.append((table, partition, run, size, adopted))

    def batch_done(self, batch: BatchDone) -> None:
        with self.lock:
            self.batches.append(batch)
            self.threads.add(threading.current_thread().name)

    def retry(self, table: str | None, what: str) -> None:
        with self.lock:
            self.retries.append((table, what))

    def partition_finished(self, table: str, partition: int, result: PartitionResult) -> None:
        with self.lock:
            self.finished.append((table, partition, result))

    def drain_finished(self, report: DrainReport) -> None:
        self.reports.append(report)

    def totals(self, table: str | None = None) -> tuple[int, int, int, int]:
        mine = [b for b in self.batches if table is None or b.table == table]
        return (
            sum(b.upserted for b in mine),
            sum(b.deleted for b in mine),
            sum(b.dead_lettered for b in mine),
            sum(b.skipped for b in mine),
        )


def report_totals(report: DrainReport, table: str | None = None) -> tuple[int, int, int, int]:
    r: Any = report.tables[table] if table else report
    return (r.upserted, r.deleted, r.dead_lettered, r.skipped)


@pytest.fixture
def tables(db, schema):
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY, v int CHECK (v >= 0), ver int)")
    db.execute(f"CREATE TABLE {schema}.b (id int PRIMARY KEY, v int)")
    return (
        Table(f"{schema}.a", partitions=4, version_column="ver"),
        Table(f"{schema}.b", partitions=3),
    )


def test_events_add_up_to_the_report_over_several_workers(r, db, dsn, prefix, tables):
    a, b = tables
    w = Syncwd(r, prefix=prefix)
    # a: 2000 records, 100 deleted, 19 refused by the CHECK (1007 is deleted), 50 older than their row (skipped)
    db.execute(f"INSERT INTO {a.name} SELECT i, i, 100 FROM generate_series(1950, 1999) i")
    w.update_many(a, [{"id": i, "v": -1 if i % 100 == 7 else i, "ver": 1} for i in range(2000)])
    for i in range(1000, 1100):
        w.delete(a, i)
    w.update_many(b, [{"id": i, "v": i} for i in range(1500)])
    sizes = {t.name: sum(r.scard(t.keys(n, prefix).dirty) for n in range(t.partitions)) for t in tables}
    seen = Recorder()
    on_batch: list[int] = []
    drainer = FastDrainer(
        r, dsn, prefix=prefix, batch=97, workers=3, observer=seen, on_batch=lambda _t, _p, n: on_batch.append(n)
    )
    report = drainer.drain()

    assert report.exit_code == 1 and report.dead_lettered == 19 and report.skipped == 50 and report.deleted == 100
    assert seen.started == [{a.name: 4, b.name: 3}]
    assert seen.reports == [report]
    # Each batch once, its counts those of the report, per table and in all.
    for name in (a.name, b.name):
        assert seen.totals(name) == report_totals(report, name), name
    assert seen.totals() == report_totals(report)
    assert all(bt.merge_seconds is not None and bt.merge_seconds >= 0 for bt in seen.batches)
    assert len(seen.batches) == len(on_batch)  # the older hook still runs, once per batch
    assert sum(on_batch) == report.upserted + report.deleted
    # The snapshot sizes: the ids each partition's run had to go through.
    per_table = Counter[str]()
    for table, _partition, run, size, adopted in seen.runs:
        assert run and not adopted
        per_table[table] += size
    assert dict(per_table) == sizes
    assert sum(bt.rows for bt in seen.batches) == sum(sizes.values())
    assert sorted((t, p) for t, p, _ in seen.finished) == sorted(
        [(a.name, n) for n in range(4)] + [(b.name, n) for n in range(3)]
    )
    assert not seen.retries
    assert all(name.startswith("syncwd-ack") for name in seen.threads)  # told from the partitions' own threads
    assert count(db, b.name) == 1500


def test_events_add_up_when_an_ack_and_a_dead_letter_reply_are_lost(r, db, dsn, prefix, tables, monkeypatch):
    """A batch merged whose ack failed is counted once (when merged), and a
    dead-letter call whose reply was lost is counted when confirmed: the
    events follow the report through the partition's retry."""
    a, _ = tables
    a1 = Table(a.name, partitions=1, version_column="ver")
    Syncwd(r, prefix=prefix).update_many(a1, [{"id": i, "v": -1 if i % 50 == 3 else i, "ver": 1} for i in range(500)])
    ack, dead = scripts.ack, scripts.dead
    failed = {"ack": 0, "dead": 0}

    def flaky_ack(*args: Any, **kwargs: Any) -> Any:
        result = ack(*args, **kwargs)
        if failed["ack"] == 0 and args[5]:  # the first batch's ack passed, its reply lost
            failed["ack"] += 1
            raise redis_lib.ConnectionError("reply lost (test)")
        return result

    def flaky_dead(*args: Any, **kwargs: Any) -> Any:
        result = dead(*args, **kwargs)
        if failed["dead"] == 1:  # the second dead-letter call passed, its reply lost
            failed["dead"] += 1
            raise redis_lib.ConnectionError("reply lost (test)")
        failed["dead"] += 1
        return result

    monkeypatch.setattr(scripts, "ack", flaky_ack)
    monkeypatch.setattr(scripts, "dead", flaky_dead)
    seen = Recorder()
    report = FastDrainer(r, dsn, prefix=prefix, batch=100, retry_backoff=0.01, observer=seen).drain()

    assert failed["ack"] == 1 and failed["dead"] >= 2  # both faults happened
    assert report.exit_code == 1 and report.upserted == 490 and report.dead_lettered == 10
    assert seen.totals() == report_totals(report)
    # The dead letters confirmed after the lost reply: told at the partition's end, as no batch of their own.
    settled = [bt for bt in seen.batches if bt.merge_seconds is None]
    assert len(settled) == 1 and settled[0].dead_lettered >= 1 and settled[0].rows == settled[0].dead_lettered
    assert [t for t, _ in seen.retries] == [a1.name] * len(seen.retries) and len(seen.retries) >= 1
    assert "ConnectionError" in seen.retries[0][1]
    assert len(seen.runs) >= 2 and seen.runs[-1][4]  # the retry adopted the run it left


def test_a_failing_observer_is_logged_and_the_drain_goes_on(r, db, dsn, prefix, tables):
    _, b = tables

    class Broken(DrainObserver):
        def batch_done(self, batch: BatchDone) -> None:
            raise RuntimeError("observer bug")

    Syncwd(r, prefix=prefix).update_many(b, [{"id": i, "v": i} for i in range(300)])
    heard: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: heard.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("syncwd_fast")  # its own handler: it may not propagate to caplog's
    logger.addHandler(handler)
    try:
        report = FastDrainer(r, dsn, prefix=prefix, batch=50, observer=Broken()).drain()
    finally:
        logger.removeHandler(handler)
    assert report.exit_code == 0 and report.upserted == 300 and count(db, b.name) == 300
    said = [message for message in heard if "observer Broken.batch_done failed" in message]
    assert len(said) == 1 and "observer bug" in said[0]  # once, not once per batch


def test_retries_before_any_table_are_told_with_no_table(dsn):
    from syncwd_fast.servers import free_port

    seen = Recorder()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis_lib.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))  # refused at once, not retried by redis-py
    report = FastDrainer(client, dsn, retries=2, retry_backoff=0.01, observer=seen).drain()
    assert report.exit_code == 3
    assert [t for t, _ in seen.retries] == [None, None] and "ConnectionError" in seen.retries[0][1]
    assert seen.reports == [report] and not seen.started and not seen.batches


def test_an_observer_must_be_one(r, dsn):
    from syncwd_fast.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="DrainObserver"):
        FastDrainer(r, dsn, observer=lambda *a: None)  # type: ignore[arg-type]
