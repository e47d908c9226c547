"""lua/pop.lua"""

import pytest
import redis as redis_lib

from syncwd_fast import scripts
from syncwd_fast.errors import LeaseLost
from syncwd_fast.keys import PartitionKeys

from .helpers import in_flight, redo


@pytest.fixture
def keys(r, prefix):
    k = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, k, "acquire", "tok", 60_000)
    return k


def start(r, keys, ids, run="R"):
    """Values for ``ids``, marked dirty and snapshotted into ``run``."""
    r.mset({keys.value(i): b'{"id":%s}' % i.encode() for i in ids})
    r.sadd(keys.dirty, *ids)
    assert scripts.snapshot(r, keys, "tok", run).run == run


def pop_all(r, keys, count, run="R"):
    """Pop until the run is read through; returns every pop."""
    pops = []
    while True:
        popped = scripts.pop(r, keys, run, "tok", count, 60_000)
        pops.append(popped)
        if not popped.remaining:
            return pops


def test_pops_ids_with_their_values_as_one_in_flight_record(r, keys):
    start(r, keys, [str(i) for i in range(5)])
    popped = scripts.pop(r, keys, "R", "tok", 10, 60_000)
    assert sorted(popped.ids) == ["0", "1", "2", "3", "4"] and popped.remaining == 0
    assert popped.values == [b'{"id":%s}' % i.encode() for i in popped.ids]
    [(number, ids)] = popped.pops
    assert ids == popped.ids and r.hkeys(keys.inflight("R")) == [str(number).encode()]
    assert in_flight(r, keys, "R") == ["0", "1", "2", "3", "4"]


def test_the_run_set_is_read_by_cursor_in_one_pass_and_left_as_it_is(r, keys):
    ids = [f"id-{i}" for i in range(3000)]  # a hashtable set: read in steps
    start(r, keys, ids)
    first = scripts.pop(r, keys, "R", "tok", 100, 60_000)
    assert 0 < len(first.ids) < 400 and r.hget(keys.meta, "cursor") not in (b"0", b"done")
    assert r.scard(keys.run("R")) == 3000  # not changed while it is read
    # taken: the ids read, those past the count waiting in the redo list included
    assert r.hmget(keys.meta, ["taken", "again"]) == [str(len(first.ids) + len(redo(r, keys, "R"))).encode(), b"0"]
    pops = [first, *pop_all(r, keys, 100)]
    popped = [i for p in pops for i in p.ids]
    assert len(popped) == len(set(popped)) and sorted(popped) == sorted(ids)  # each id once
    assert r.hget(keys.meta, "cursor") == b"done" and not pops[-1].remaining
    assert r.hlen(keys.inflight("R")) == len([p for p in pops if p.ids])
    # The run ends with the ack of its last records: the set goes then.
    assert scripts.ack(r, keys, "R", "tok", 60, [n for p in pops for n, _ in p.pops]) == (0, 0)
    assert not r.exists(keys.run("R")) and r.hmget(keys.meta, ["run", "cursor", "taken"]) == [None] * 3


def test_no_id_comes_out_twice_in_a_pass(r, keys):
    ids = [f"id-{i}" for i in range(20_000)]
    start(r, keys, ids)
    popped = [i for p in pop_all(r, keys, 125) for i in p.ids]
    assert len(popped) == len(set(popped)) == 20_000


def test_a_cursor_from_another_server_reads_the_set_again_as_a_repeat(r, keys):
    # Redis restarted or failed over: the set was rebuilt with another hash seed,
    # so the cursor kept in meta points anywhere. Meta names the server the
    # cursor came from: on another, the set is read again from cursor 0, as a
    # repeat (ids merged before come again; a missing value then means done).
    ids = [f"id-{i}" for i in range(3000)]
    start(r, keys, ids)
    first = scripts.pop(r, keys, "R", "tok", 100, 60_000)
    assert not first.done and r.hget(keys.meta, "again") == b"0"
    r.hset(keys.meta, mapping={"cursor": "3000", "server": "f" * 40})  # another server's cursor
    r.delete(keys.value(first.ids[0]))  # merged and acked as a tombstone before the restart
    rest = pop_all(r, keys, 100)
    again = [i for p in rest for i in p.ids]
    # the whole set again (and the ids the first pop left to redo)
    assert sorted(set(again + [i for p in rest for i in p.done])) == sorted(ids)
    assert [i for p in rest for i in p.done] == [first.ids[0]]  # its value gone: done, not dead
    assert r.hget(keys.meta, "again") == b"1" and r.hget(keys.meta, "cursor") == b"done"


def test_a_cursor_of_this_server_is_kept(r, keys):
    ids = [f"id-{i}" for i in range(3000)]
    start(r, keys, ids)
    first = scripts.pop(r, keys, "R", "tok", 100, 60_000)
    server = r.hget(keys.meta, "server")
    assert server == r.info("server")["run_id"].encode()
    rest = [i for p in pop_all(r, keys, 100) for i in p.ids]
    assert sorted(first.ids + rest) == sorted(ids) and len(rest) == len(set(rest)) == 3000 - len(first.ids)


def test_a_run_of_the_version_that_removed_ids_is_read_from_the_start(r, keys):
    # That version SREMed ids as it read them and kept no "scan" in meta: its
    # set holds only ids not read yet, whatever its cursor says.
    ids = [f"id-{i}" for i in range(3000)]
    start(r, keys, ids)
    r.srem(keys.run("R"), *ids[:1000])  # read, merged and acked by that version
    r.hset(keys.meta, "cursor", "1234")
    r.hdel(keys.meta, "scan", "again", "taken")
    popped = [i for p in pop_all(r, keys, 100) for i in p.ids]
    assert sorted(popped) == sorted(ids[1000:]) and len(popped) == 2000
    assert r.hget(keys.meta, "scan") == b"whole" and r.hget(keys.meta, "again") == b"0"


def test_a_small_set_read_whole_is_taken_count_at_a_time(r, keys):
    start(r, keys, [str(i) for i in range(300)])  # an intset: SSCAN returns it all at once
    popped = scripts.pop(r, keys, "R", "tok", 100, 60_000)
    assert len(popped.ids) == 100 and popped.remaining == 1 and r.hget(keys.meta, "cursor") == b"done"
    assert r.llen(scripts.redo_key(keys, "R")) == 1  # the other 200 wait there, popped next
    rest = pop_all(r, keys, 100)
    assert [len(p.ids) for p in rest] == [100, 100]
    assert sorted(popped.ids + [i for p in rest for i in p.ids], key=int) == [str(i) for i in range(300)]


def test_a_missing_value_comes_back_as_none(r, keys):
    r.sadd(keys.dirty, "gone")
    scripts.snapshot(r, keys, "tok", "R")
    popped = scripts.pop(r, keys, "R", "tok", 10, 60_000)
    assert popped.ids == ["gone"] and popped.values == [None]


def test_records_to_redo_come_first_split_to_count(r, keys):
    start(r, keys, ["a", "b", "c", "d", "e"])
    scripts.pop(r, keys, "R", "tok", 10, 60_000)
    assert scripts.snapshot(r, keys, "tok", "other").adopted  # as after a crash: the record is to redo
    assert not r.exists(keys.inflight("R")) and r.llen(scripts.redo_key(keys, "R")) == 1
    first = scripts.pop(r, keys, "R", "tok", 3, 60_000)
    second = scripts.pop(r, keys, "R", "tok", 3, 60_000)
    assert len(first.ids) == 3 and len(second.ids) == 2 and first.remaining == 1 and second.remaining == 0
    assert sorted(first.ids + second.ids) == ["a", "b", "c", "d", "e"]
    assert in_flight(r, keys, "R") == ["a", "b", "c", "d", "e"]
    assert not r.exists(scripts.redo_key(keys, "R"))


def test_a_run_that_is_over_pops_nothing(r, keys):
    start(r, keys, ["1"])
    r.hdel(keys.meta, "run")
    popped = scripts.pop(r, keys, "R", "tok", 10, 60_000)
    assert (popped.ids, popped.remaining, popped.pops) == ([], 0, [])
    assert not r.exists(keys.inflight("R"))


def test_renews_the_lease(r, keys):
    start(r, keys, ["1"])
    r.pexpire(keys.lease, 1000)
    scripts.pop(r, keys, "R", "tok", 1, 60_000)
    assert r.pttl(keys.lease) > 30_000


def test_fenced_when_the_lease_is_lost(r, keys):
    start(r, keys, ["1"])
    r.set(keys.lease, "someone-else")
    with pytest.raises(LeaseLost):
        scripts.pop(r, keys, "R", "tok", 10, 60_000)
    assert r.hget(keys.meta, "cursor") == b"0"
    assert not r.exists(keys.inflight("R"))


# --- pop_batch: several pops, each pop's MGET sent with the next pop ----------


def test_a_batch_is_filled_by_pops_each_value_read_with_the_next_pop(r, keys):
    ids = [f"id-{i}" for i in range(3000)]
    start(r, keys, ids)
    r.set(keys.value("id-7"), b'{"id":"newer"}')  # written after the snapshot: the value read is the newest
    batch = scripts.pop_batch(r, keys, "R", "tok", 100, 1000, 60_000)
    assert 900 <= len(batch.ids) <= 1000 and batch.remaining == 1
    assert len(batch.pops) >= 9 and all(len(ids_) <= 100 for _, ids_ in batch.pops)
    assert [i for _, ids_ in batch.pops for i in ids_] == batch.ids  # in pop order, every pop's ids
    expected = {i: b'{"id":%s}' % i.encode() for i in batch.ids}
    if "id-7" in expected:
        expected["id-7"] = b'{"id":"newer"}'
    assert dict(zip(batch.ids, batch.values)) == expected
    assert in_flight(r, keys, "R") == sorted(batch.ids)
    got = list(batch.ids)
    while batch.remaining:
        batch = scripts.pop_batch(r, keys, "R", "tok", 100, 1000, 60_000)
        got += batch.ids
    assert len(got) == len(set(got)) and sorted(got) == sorted(ids)


def test_a_batch_survives_a_script_flush_between_its_pops(private_redis, monkeypatch):
    """NOSCRIPT inside the pipeline (Redis restarted, or SCRIPT FLUSH): the pop
    did not run; it is run again with its source, and no id is lost or doubled."""
    r = redis_lib.Redis.from_url(private_redis.url)
    keys = PartitionKeys("p", "t", 0)
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    ids = [str(i) for i in range(2000)]
    start(r, keys, ids)
    real, calls = scripts.read_and_pop, []

    def flushing(*args, **kwargs):
        calls.append(1)
        if len(calls) in (2, 5):
            r.script_flush()
        return real(*args, **kwargs)

    monkeypatch.setattr(scripts, "read_and_pop", flushing)
    got = []
    while True:
        batch = scripts.pop_batch(r, keys, "R", "tok", 100, 700, 60_000)
        assert all(v == b'{"id":%s}' % i.encode() for i, v in zip(batch.ids, batch.values))
        got += batch.ids
        if not batch.remaining:
            break
    assert len(calls) > 5 and sorted(got, key=int) == ids and len(got) == len(set(got))


def test_packed_ids_reads_what_pop_recorded(r, prefix):
    """scripts.packed_ids (for `get` and status) reads cmsgpack arrays as
    pop.lua writes them, of every string length, and refuses what is not one."""
    for ids in ([b"1"], [b"x" * 31, b"y" * 32, b"z" * 300, b"", b"\xff\x00"], [str(i).encode() for i in range(70_000)]):
        packed = r.eval("return cmsgpack.pack(ARGV)", 0, *ids)
        assert scripts.packed_ids(packed) == ids
    for bad in (b"\x91", b"\x92\xa1a", b"\x91\x01", b"\x91\xd9\x05ab"):
        with pytest.raises(ValueError):
            scripts.packed_ids(bad)
