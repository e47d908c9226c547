"""Review 15c: adversarial tests of the sink contract with custom sinks
(FastDrainer(sinks=...)). Each failing test documents a defect."""

from __future__ import annotations

import json

from syncwd_fast import FastDrainer, RejectedRecords, Syncwd, Table
from syncwd_fast.sinks import Sink


def drain(r, prefix, t, sink, **kw):
    kw.setdefault("retries", 1)
    kw.setdefault("retry_backoff", 0.01)
    return FastDrainer(r, "", prefix=prefix, sinks={t.name: sink}, **kw).drain()


def raw_write(r, t, prefix, record_id, value):
    keys = t.keys(0, prefix)
    if isinstance(record_id, bytes):
        r.set(keys.value_prefix.encode() + record_id, value)
    else:
        r.set(keys.value(record_id), value)
    r.sadd(keys.dirty, record_id)


class RefuseNaming(Sink):
    """A raw sink (decodes the stored values itself) that refuses records
    with a level < 0, naming the record in the reason (as a sink's message
    naturally does)."""

    raw = True

    def __init__(self, how="rejected"):
        self.rows = {}
        self.how = how

    def write(self, batch):
        refused = {}
        for rid, raw in zip(batch.ids, batch.values):
            rec = type("R", (), {"id": rid, "value": json.loads(raw)})
            if rec.value.get("level", 0) < 0:
                if self.how == "raise":
                    raise ValueError(f"negative level in record {rec.id}")
                refused[rec.id] = f"negative level in record {rec.id}"
                continue
            self.rows[rec.id] = rec.value
        batch.check_lease()
        if refused:
            raise RejectedRecords(refused)


def _non_utf8_setup(r, prefix, t):
    Syncwd(r, prefix=prefix).register(t)
    bad = b"\xff\xfe"  # an id that is not UTF-8: the core carries it as text with surrogates
    raw_write(r, t, prefix, bad, b'{"name": "x", "level": -1}')
    for i in range(5):
        raw_write(r, t, prefix, str(i), b'{"name": "%d", "level": 1}' % i)
    return bad


def test_review15c_a_refusal_reason_naming_a_non_utf8_id_strands_the_partition(r, prefix):
    """A sink refuses a record through RejectedRecords({id: reason}) whose
    reason names the id (f"... {rec.id}"). The id is not UTF-8 in Redis, so the
    core hands it to the sink as text with surrogates (scripts.decoded_id,
    'so the id can be dead-lettered'); the reason then holds the surrogates too.
    scripts.dead sends the reason to redis-py as str, which encodes it with
    strict UTF-8: UnicodeEncodeError, not a RedisError -> the drain aborts (exit
    3) with nothing acked, and every later drain adopts the same batch first:
    the partition is stranded by one record. Promise: refused records are
    dead-lettered with the reason, the rest acked; no single record strands its
    partition. Root cause: scripts.dead (and the isolation reason in
    partition._isolate) pass reason text with lone surrogates; fix: encode the
    reason with errors="surrogateescape"/"backslashreplace" (as id_wire does
    for ids) before the call."""
    t = Table("game.sur", key="name", partitions=1)
    bad = _non_utf8_setup(r, prefix, t)
    sink = RefuseNaming()
    report = drain(r, prefix, t, sink)
    assert report.aborted is None, report.aborted
    assert len(sink.rows) == 5
    assert r.hexists(t.keys(0, prefix).dead, bad)  # dead-lettered under its own bytes


def test_review15c_an_exception_naming_a_non_utf8_id_strands_the_partition(r, prefix):
    """Same root cause through the core's own isolation: a sink raises
    ValueError(f"... {rec.id}") for one bad record; partition._isolate finds it
    and builds the reason "the sink failed on this record: ValueError: ...
    <id with surrogates>"; scripts.dead fails to encode it (UnicodeEncodeError)
    and the drain aborts with exit 3, on every drain. Should: the record is
    dead-lettered, the other five land."""
    t = Table("game.sur2", key="name", partitions=1)
    _non_utf8_setup(r, prefix, t)
    sink = RefuseNaming(how="raise")
    report = drain(r, prefix, t, sink)
    assert report.aborted is None, report.aborted
    assert len(sink.rows) == 5
    assert len(r.hgetall(t.keys(0, prefix).dead)) == 1
