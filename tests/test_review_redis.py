"""Adversarial review of the Redis-side bookkeeping (pop/ack/snapshot/dead):
each test is a defect found, against real servers."""

from __future__ import annotations

import redis as redis_lib

from syncwd_fast import scripts
from syncwd_fast.keys import PartitionKeys

from .helpers import in_flight, redo


def pending(r, keys, run):
    """Every id the run still holds: in its set, in flight or to redo."""
    return {i.decode() for i in r.smembers(keys.run(run))} | set(in_flight(r, keys, run)) | set(redo(r, keys, run))


def test_an_ack_after_redis_came_back_from_its_rdb_acks_only_the_record_it_merged(private_redis):
    """Redis restarted from its RDB (or failed over to a replica a few writes
    behind) rolls the ``pops`` counter back: the next pop reuses the number of
    a pop the drainer holds from before the restart. That drainer's ack (its
    batch had been merged, the ack was retried on the new server) then finds
    the NEW record under the old number and acks every id in it: ids never
    merged get the TTL and leave the run, in flight nowhere: lost."""
    r = redis_lib.Redis.from_url(private_redis.url)
    keys = PartitionKeys("p", "t", 0)
    assert scripts.lease(r, keys, "acquire", "tok", 600_000)
    ids = [f"id-{i:02d}" for i in range(20)]
    r.mset({keys.value(i): b'{"id":"%s"}' % i.encode() for i in ids})
    r.sadd(keys.dirty, *ids)
    scripts.snapshot(r, keys, "tok", "R")
    scripts.pop(r, keys, "R", "tok", 5, 600_000)
    r.save()  # the last RDB before the restart
    merged = scripts.pop(r, keys, "R", "tok", 5, 600_000)  # the drainer merges these five...
    [(number, _)] = merged.pops

    private_redis.restart(kill=True)  # ...while Redis restarts from its RDB
    r = redis_lib.Redis.from_url(private_redis.url)
    after = scripts.pop(r, keys, "R", "tok", 10, 600_000)  # the popper thread carries on
    [(again, _)] = after.pops
    assert again != number, "a pop number given twice"
    scripts.ack(r, keys, "R", "tok", 3600, [number])  # the merged batch's ack, retried on the new server

    assert set(after.ids) <= set(in_flight(r, keys, "R")), "a record never merged left the run"
    never_merged = set(after.ids) - set(merged.ids)
    assert never_merged <= pending(r, keys, "R"), "ids never merged left the run"
    assert all(r.ttl(keys.value(i)) == -1 for i in never_merged), "values never merged got the TTL"


def test_a_late_ack_does_not_delete_the_newer_value_of_the_next_run(r, prefix):
    """An ack's delivery is late (its link stalled; the socket timed out and the
    drain carried on on a new connection, while the old one still held the
    request): meanwhile its record was redone and acked, the run ended, the
    record was written again and snapshotted into the next run, so it is in
    no dirty set. The late ack deletes a tombstone it names without looking
    whether its record is still there, and takes the newer value with it."""
    keys = PartitionKeys(prefix, "t", 0)
    assert scripts.lease(r, keys, "acquire", "tok", 60_000)
    entry = b'{"partitions":1,"key":["id"],"ttl":3600,"version_column":null}'
    write = lambda value: scripts.call(r, "write", *scripts.write_args(keys, entry, [("1", value)]))  # noqa: E731
    write(b'~{"id":1}')
    scripts.snapshot(r, keys, "tok", "R1")
    [(first, _)] = scripts.pop(r, keys, "R1", "tok", 10, 60_000).pops
    # merged (the row deleted) and committed; the ack to `first` is sent but stalls.
    # The drain's retry adopts the run, redoes the record, merges and acks it: the run ends.
    assert scripts.snapshot(r, keys, "tok", "other").adopted
    [(second, _)] = scripts.pop(r, keys, "R1", "tok", 10, 60_000).pops
    assert scripts.ack(r, keys, "R1", "tok", 3600, [second], deleted=["1"]) == (0, 0)
    write(b'{"id":1,"v":2}')  # the record is written again (a new row)...
    assert scripts.snapshot(r, keys, "tok", "R2").run == "R2"  # ...and is in the next run
    scripts.ack(r, keys, "R1", "tok", 3600, [first], deleted=["1"])  # the late ack arrives
    assert r.get(keys.value("1")) == b'{"id":1,"v":2}', "the newer value, never merged, was deleted"


def test_status_of_a_run_in_flight_through_a_decode_responses_client(redis_url, prefix):
    """A decode_responses client is supported (test_drain), but status reads the
    in-flight records (cmsgpack, binary) through it: decoding them as UTF-8
    fails while any run has a record in flight or to redo."""
    from syncwd_fast import Syncwd, Table
    from syncwd_fast.status import table_status

    r = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    t = Table("t", partitions=1)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i} for i in range(3)])
    keys = t.keys(0, prefix)
    assert scripts.lease(r, keys, "acquire", "tok", 60_000)
    scripts.snapshot(r, keys, "tok", "R")
    # a record to redo, as after an adoption
    r.eval("redis.call('LPUSH', KEYS[1], cmsgpack.pack(ARGV))", 1, scripts.redo_key(keys, "R"), "7", "8")
    scripts.pop(r, keys, "R", "tok", 1, 60_000)  # one id of the redo record in flight
    status = table_status(r, prefix)["t"]
    assert (status["in_run"], status["inflight"]) == (3, 2)
