"""Review 15b: adversarial tests of partition.py's isolation and accounting
with custom sinks (FastDrainer(sinks=...)). Each failing test documents a
defect (see its docstring)."""

from __future__ import annotations

import redis.exceptions

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.sinks import Sink, Written

from .helpers import dead_entries


def drain(r, prefix, t, sink, **kw):
    kw.setdefault("retries", 2)
    kw.setdefault("retry_backoff", 0.01)
    return FastDrainer(r, "", prefix=prefix, sinks={t.name: sink}, **kw).drain()


def raw_write(r, t, prefix, record_id, value):
    keys = t.keys(0, prefix)
    r.set(keys.value(record_id), value)
    r.sadd(keys.dirty, record_id)


class NoEmptyBatches(Sink):
    """Builds one multi-row statement per batch: an empty batch is an error
    (as "INSERT ... VALUES " with nothing after it would be)."""

    def __init__(self):
        self.rows = {}

    def write(self, batch):
        if not batch.upserts and not batch.deletes:
            raise ValueError("nothing to write: INSERT ... VALUES needs a row")
        for rec in batch.upserts:
            self.rows[rec.id] = rec.value
        batch.check_lease()


def test_review15b_a_batch_of_only_unreadable_records_strands_the_partition(r, prefix):
    """Found by review (fixed): when every record of a batch is unreadable (invalid JSON, key
    mismatch: dead letters before any sink sees them), the drain still calls
    sink.write() with an EMPTY batch. A sink that raises on an empty batch
    sends partition._isolate down the small-batch rule with ids == [] where
    `len(found.failed) == len(ids) <= 16` holds (0 == 0) and
    `max([...for rid in ids])` raises "ValueError: max() arg is an empty
    sequence": the drain aborts (exit 3), the unreadable records are never
    dead-lettered and, adopted first by every later drain, strand the
    partition's good records forever. Promise: "No single record can strand
    its partition: a record that cannot be decoded ... is a dead letter before
    any sink sees it". Fix: do not call the sink for a batch with no records
    (dead-letter the unreadable ones directly); guard _isolate against ids == []."""
    t = Table("game.unreadable", key="id", partitions=1)
    Syncwd(r, prefix=prefix).register(t)
    raw_write(r, t, prefix, "1", b'{"id": 1, "level":')  # truncated JSON
    raw_write(r, t, prefix, "2", b'{"id": 99}')  # key mismatch
    sink = NoEmptyBatches()
    first = drain(r, prefix, t, sink)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "level": 1} for i in range(10, 20)])
    second = drain(r, prefix, t, sink)
    assert set(dead_entries(r, t.keys(0, prefix))) == {"1", "2"}, (first.aborted, second.aborted)
    assert len(sink.rows) == 10, (first.aborted, second.aborted)


class ParentFirst(Sink):
    """Like a database with a foreign key from ``parent`` to ``id``: a record
    whose parent is neither written yet nor in the same batch is refused with
    an exception; so is a record with a negative level."""

    def __init__(self):
        self.rows = {}
        self.writes = 0

    def write(self, batch):
        self.writes += 1
        here = {rec.id for rec in batch.upserts}
        for rec in batch.upserts:
            if rec.value.get("level", 0) < 0:
                raise ValueError(f"negative level in {rec.id}")
            parent = rec.value.get("parent")
            if parent is not None and str(parent) not in self.rows and str(parent) not in here:
                raise LookupError(f"{rec.id}: parent {parent} missing")
        batch.check_lease()
        for rec in batch.upserts:
            self.rows[rec.id] = rec.value


def test_review15b_a_record_that_landed_during_isolation_is_also_dead_lettered(r, prefix):
    """Found by review (fixed): partition._isolate dead-letters every id in found.failed, even an
    id that later LANDED in a bigger part (found.done). Here 16 bad records
    come first (ids 1..16, integer ids: SSCAN of an intset is in order), so the
    probe tries records alone, among them 23, whose parent 24 is in the same
    batch but not yet written: 23 fails alone. Later the part [21..25] with
    both lands, 23 included. 23 is now both in the sink AND in the dead-letter
    hash (its Redis value PERSISTed, counted dead, not upserted): the contract
    says a refused record is not durable and every other one is. Fix: refuse
    only ``failed`` ids that are not in ``found.done``."""
    t = Table("game.fk", key="id", partitions=1)
    sw = Syncwd(r, prefix=prefix)
    rows = [{"id": i, "level": -1} for i in range(1, 17)]
    rows += [{"id": i, "level": 1} for i in range(17, 41) if i != 23]
    rows.append({"id": 23, "level": 1, "parent": 24})
    sw.update_many(t, rows)
    sink = ParentFirst()
    report = drain(r, prefix, t, sink)
    dead = dead_entries(r, t.keys(0, prefix))
    both = sorted(set(dead) & set(sink.rows), key=int)
    assert not both, {rid: dead[rid]["error"] for rid in both}
    assert (report.upserted, report.dead_lettered) == (24, 16), report


class CountsUnchanged(Sink):
    """Says how many upserts changed nothing (the row was there already), as
    the MySQL sink does for records of key columns only."""

    def __init__(self):
        self.rows = {}

    def write(self, batch):
        batch.check_lease()
        unchanged = 0
        for rec in batch.upserts:
            if self.rows.get(rec.id) == rec.value:
                unchanged += 1
            self.rows[rec.id] = rec.value
        return Written(unchanged=unchanged)


def test_review15b_a_batch_merged_again_after_a_failed_ack_is_counted_as_skipped(r, prefix, monkeypatch):
    """DEFECT (accounting): after an ack that failed (a Redis blip) the batch
    is merged again; its records were counted then (``_unacked``), so
    partition._merge leaves them out of ``upserted`` -- but still subtracts
    ``merged.unchanged`` (now every record: their rows are there from the
    first merge) and adds it to ``skipped``. 20 new rows written by this drain
    are reported as upserted 0, skipped 20. Fix: subtract/add ``unchanged``
    only for records not counted before (the sink would have to say which;
    or leave unchanged out when ``again`` covers the batch)."""
    from syncwd_fast import partition

    t = Table("game.unacked", key="id", partitions=1)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "level": 1} for i in range(20)])
    real_ack = partition.scripts.ack
    failed = []

    def flaky_ack(client, keys, run, token, ttl, pops, *args, **kwargs):
        if pops and not failed:
            failed.append(1)
            raise redis.exceptions.ConnectionError("link dropped during the ack")
        return real_ack(client, keys, run, token, ttl, pops, *args, **kwargs)

    monkeypatch.setattr(partition.scripts, "ack", flaky_ack)
    sink = CountsUnchanged()
    report = drain(r, prefix, t, sink)
    assert failed and len(sink.rows) == 20
    assert (report.exit_code, report.upserted, report.skipped) == (0, 20, 0), report
