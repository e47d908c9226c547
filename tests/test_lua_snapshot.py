"""lua/snapshot.lua"""

import pytest
import redis

from syncwd_fast import scripts
from syncwd_fast.errors import ConfigurationError, LeaseLost
from syncwd_fast.keys import PartitionKeys

from .helpers import in_flight


@pytest.fixture
def keys(r, prefix):
    k = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, k, "acquire", "tok", 60_000)
    return k


def test_nothing_dirty_means_no_run(r, keys):
    snap = scripts.snapshot(r, keys, "tok", "run1")
    assert (snap.run, snap.size, snap.adopted) == ("", 0, False)
    assert not r.hexists(keys.meta, "run")


def test_renames_dirty_to_a_new_run_read_from_cursor_zero(r, keys):
    r.sadd(keys.dirty, "1", "2", "3")
    snap = scripts.snapshot(r, keys, "tok", "run1")
    assert (snap.run, snap.size, snap.adopted) == ("run1", 3, False)
    assert not r.exists(keys.dirty)
    assert r.smembers(keys.run("run1")) == {b"1", b"2", b"3"}
    assert r.hmget(keys.meta, ["run", "cursor"]) == [b"run1", b"0"]
    r.sadd(keys.dirty, "4")  # a write after the snapshot goes to a fresh dirty set
    assert r.smembers(keys.run("run1")) == {b"1", b"2", b"3"}


def test_adopts_an_unfinished_run_its_records_to_redo_and_its_cursor_kept(r, keys):
    r.sadd(keys.dirty, *[f"id-{i}" for i in range(2000)])
    scripts.snapshot(r, keys, "tok", "old")
    popped = [scripts.pop(r, keys, "old", "tok", 100, 60_000) for _ in range(3)]
    # SSCAN's COUNT is a hint: ids a pop read past its count wait at the head of the redo list.
    extra = r.lrange(scripts.redo_key(keys, "old"), 0, -1)
    cursor = r.hget(keys.meta, "cursor")
    r.sadd(keys.dirty, "9")
    scripts.lease(r, keys, "release", "tok")
    assert scripts.lease(r, keys, "acquire", "next", 60_000)
    snap = scripts.snapshot(r, keys, "next", "new")
    left = 2000 - sum(len(p.ids) for p in popped) - sum(scripts.packed_count(x) for x in extra)
    assert (snap.run, snap.adopted, snap.size) == ("old", True, left + 3 + len(extra))
    assert not r.exists(keys.inflight("old")) and r.llen(scripts.redo_key(keys, "old")) == 3 + len(extra)
    assert r.hget(keys.meta, "cursor") == cursor and r.hget(keys.meta, "owner") == b"next"
    assert r.smembers(keys.dirty) == {b"9"}  # left for the next snapshot
    for _ in extra:  # the extra ids come back first, then the adopted records
        scripts.pop(r, keys, "old", "next", 1000, 60_000)
    again = scripts.pop(r, keys, "old", "next", 1000, 60_000)
    assert again.ids in [p.ids for p in popped]  # a record redone first, whole

    assert r.hget(keys.meta, "cursor") == cursor


def test_adopting_an_empty_run_clears_it(r, keys):
    r.hset(keys.meta, mapping={"run": "old", "cursor": "0"})
    snap = scripts.snapshot(r, keys, "tok", "new")
    assert (snap.run, snap.size, snap.adopted) == ("old", 0, True)
    assert r.hmget(keys.meta, ["run", "cursor"]) == [None, None]


def test_adopts_a_run_left_by_an_earlier_version(r, keys):
    # In-flight ids in a set, no cursor: they go back into the run set, read from the start.
    r.sadd(keys.run("old"), "1")
    r.sadd(keys.inflight("old"), "2", "3")
    r.hset(keys.meta, "run", "old")
    snap = scripts.snapshot(r, keys, "tok", "new")
    assert (snap.run, snap.size, snap.adopted) == ("old", 3, True)
    assert r.smembers(keys.run("old")) == {b"1", b"2", b"3"} and not r.exists(keys.inflight("old"))
    popped = scripts.pop(r, keys, "old", "tok", 10, 60_000)
    assert sorted(popped.ids) == ["1", "2", "3"] and in_flight(r, keys, "old") == ["1", "2", "3"]


def test_refuses_without_the_lease(r, keys):
    r.sadd(keys.dirty, "1")
    with pytest.raises(LeaseLost):
        scripts.snapshot(r, keys, "other", "run1")
    assert r.smembers(keys.dirty) == {b"1"}


def test_no_run_starts_in_a_partition_a_repartition_still_moves(r, keys):
    r.hset(keys.meta, "moving", "4")  # repartition.lua "close", the command not finished
    assert scripts.snapshot(r, keys, "tok", "run1").run == ""  # nothing dirty: nothing refused
    r.sadd(keys.dirty, "1")
    with pytest.raises(ConfigurationError, match="tables repartition t --partitions 4"):
        scripts.snapshot(r, keys, "tok", "run1")
    with pytest.raises(redis.ResponseError, match="SYNCWD_MOVING 4"):
        scripts.call(r, "snapshot", [keys.dirty, keys.meta, keys.lease], ["tok", "run1", keys.run_prefix, 0])
    assert r.smembers(keys.dirty) == {b"1"} and not r.hexists(keys.meta, "run")
    r.hdel(keys.meta, "moving")  # repartition.lua "open"
    assert scripts.snapshot(r, keys, "tok", "run1").run == "run1"
