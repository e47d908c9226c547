"""Review 15: adversarial tests of the sink contract with custom sinks
(FastDrainer(sinks=...)). Each failing test documents a defect."""

from __future__ import annotations

import time

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.sinks import Sink, Written

from .helpers import dead_of
from .sinks_for_tests import DictSink


def write(r, prefix, t, n, start=0, **extra):
    Syncwd(r, prefix=prefix).update_many(t, [{"user_id": i, "level": i % 7, **extra} for i in range(start, start + n)])


def test_review15_many_bad_records_in_one_batch_strand_the_partition(r, prefix):
    """Found by review (fixed): a sink that raises ValueError on every other record (say a field
    it cannot encode) in a batch of 5,000 (the default --batch): breadth-first
    halving fails ~1,000 tries (every part down to ~10 records holds a bad one)
    before any part lands, but partition._isolate gives up after ISOLATION_TRIES
    (256) failures with nothing landed, raises SinkError, and the drain exits 3 --
    on every drain, since the same batch is adopted first each time. With random
    order this already happens with high probability at ~20% bad records. Neither
    the good records land nor the bad ones are dead-lettered. Should: every good
    record lands, every bad one is dead-lettered."""
    t = Table("game.many", key="user_id", partitions=1)
    write(r, prefix, t, 5000)
    sink = DictSink(explode=lambda rec: ValueError("cannot encode") if int(rec.id) % 2 else None)
    report = FastDrainer(r, "", prefix=prefix, sinks={t.name: sink}, batch=5000, retries=1, retry_backoff=0.01).drain()
    assert report.exit_code == 1, report.aborted
    assert (report.upserted, report.dead_lettered) == (2500, 2500)


def test_review15_two_bad_records_alone_strand_their_partition_forever(r, prefix):
    """Found by review (fixed): the lone-record rule (a single record the sink fails on is
    dead-lettered on the last retry) covers batches of ONE record only. Two bad
    records that make up a batch (a quiet partition) fail alone in _isolate, nothing
    lands, so SinkError -> exit 3; the run is adopted again first by every later
    drain, so the partition's newer, good records never drain either. Should: after
    the retries both are dead-lettered (as a lone record is) and the rest drains."""
    t = Table("game.two", key="user_id", partitions=1)
    write(r, prefix, t, 2, start=66)  # ids 66 and 67: both refused by the sink
    sink = DictSink(explode=lambda rec: KeyError("no such level") if rec.id in ("66", "67") else None)
    first = FastDrainer(r, "", prefix=prefix, sinks={t.name: sink}, retries=2, retry_backoff=0.01).drain()
    write(r, prefix, t, 10)  # good records written afterwards
    reports = [first]
    for _ in range(3):
        reports.append(FastDrainer(r, "", prefix=prefix, sinks={t.name: sink}, retries=2, retry_backoff=0.01).drain())
    assert len(sink.rows) == 10, [(x.exit_code, x.aborted) for x in reports]
    assert set(dead_of(r, t, prefix)) == {"66", "67"}


class IntIdRejecter(Sink):
    """Refuses records through Written.rejected keyed by the record's key
    value (an int), as a team's sink naturally might."""

    def __init__(self):
        self.rows = {}

    def write(self, batch):
        refused = {}
        for rec in batch.upserts:
            if rec.value["level"] < 0:
                refused[rec.value["user_id"]] = "negative level"
            else:
                self.rows[rec.id] = rec.value
        batch.check_lease()
        return Written(rejected=refused)


def test_review15_a_refusal_keyed_by_int_is_acked_as_written_and_lost(r, prefix):
    """Found by review (fixed): RejectedRecords turns its ids to str, Written.rejected does not.
    A sink that returns Written(rejected={7: "..."}) has record "7" treated as
    WRITTEN by partition._outcome ("refused ids not in the batch, ignored"): it is
    acked, its Redis value gets the cache TTL, and it is neither in the destination
    nor in the dead-letter hash -- lost once the TTL runs out. Should: the same id
    normalisation as RejectedRecords (or, for an id not in the batch, a fault
    rather than an ack)."""
    t = Table("game.intids", key="user_id", partitions=1, ttl=60)
    write(r, prefix, t, 5)
    Syncwd(r, prefix=prefix).update(t, {"user_id": 7, "level": -1})
    sink = IntIdRejecter()
    report = FastDrainer(r, "", prefix=prefix, sinks={t.name: sink}).drain()
    keys = t.keys(0, prefix)
    assert "7" not in sink.rows
    assert "7" in dead_of(r, t, prefix), (report.upserted, report.dead_lettered, r.pttl(keys.value("7")))


class Consuming(Sink):
    """Consumes the batch's lists as it writes them (pop until empty)."""

    def __init__(self):
        self.rows = {}

    def write(self, batch):
        while batch.upserts:
            rec = batch.upserts.pop()
            self.rows[rec.id] = rec.value
        while batch.deletes:
            self.rows.pop(batch.deletes.pop().id, None)


def test_review15_a_sink_that_consumes_the_batch_lists_strands_the_partition(r, prefix):
    """Found by review (fixed): partition._outcome reads batch.upserts/deletes AFTER sink.write;
    a sink that consumes them (pop()) leaves no ids, so _ack raises 'ids neither
    merged nor dead-lettered', the drain exits 3, and every later drain writes the
    same batch again and fails the same way: the partition never drains. The
    contract never says the batch is read-only. Should: the core takes the batch's
    ids before handing it to the sink."""
    t = Table("game.consume", key="user_id", partitions=1)
    write(r, prefix, t, 20)
    sink = Consuming()
    report = FastDrainer(r, "", prefix=prefix, sinks={t.name: sink}, retries=1, retry_backoff=0.01).drain()
    assert len(sink.rows) == 20
    assert (report.exit_code, report.upserted) == (0, 20), report.aborted


class Slow(DictSink):
    def write(self, batch):
        time.sleep(2.5)
        return super().write(batch)


def test_review15_a_sink_slower_than_the_lease_keeps_it(r, prefix):
    t = Table("game.slow", key="user_id", partitions=1)
    write(r, prefix, t, 30)
    sink = Slow()
    report = FastDrainer(r, "", prefix=prefix, sinks={t.name: sink}, lease_seconds=1, batch=15).drain()
    assert (report.exit_code, report.upserted) == (0, 30), report.aborted


class WeirdWritten(DictSink):
    def write(self, batch):
        super().write(batch)
        ids = [rec.id for rec in batch.upserts]
        return Written(skipped=ids[:2] + ["nope"], rejected={ids[0]: "both skipped and rejected", "ghost": "x"})


def test_review15_weird_written_contents(r, prefix):
    t = Table("game.weird", key="user_id", partitions=1)
    write(r, prefix, t, 10)
    report = FastDrainer(r, "", prefix=prefix, sinks={t.name: WeirdWritten()}).drain()
    assert (report.upserted, report.skipped, report.dead_lettered) == (8, 1, 1), report
    again = FastDrainer(r, "", prefix=prefix, sinks={t.name: WeirdWritten()}).drain()
    assert (again.upserted, again.exit_code) == (0, 0)
