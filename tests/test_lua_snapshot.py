"""lua/snapshot.lua"""

import pytest

from syncwd_fast import scripts
from syncwd_fast.errors import LeaseLost
from syncwd_fast.keys import PartitionKeys


@pytest.fixture
def keys(r, prefix):
    k = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, k, "acquire", "tok", 60_000)
    return k


def test_nothing_dirty_means_no_run(r, keys):
    snap = scripts.snapshot(r, keys, "tok", "run1")
    assert (snap.run, snap.size, snap.adopted) == ("", 0, False)
    assert not r.hexists(keys.meta, "run")


def test_renames_dirty_to_a_new_run(r, keys):
    r.sadd(keys.dirty, "1", "2", "3")
    snap = scripts.snapshot(r, keys, "tok", "run1")
    assert (snap.run, snap.size, snap.adopted) == ("run1", 3, False)
    assert not r.exists(keys.dirty)
    assert r.smembers(keys.run("run1")) == {b"1", b"2", b"3"}
    assert r.hget(keys.meta, "run") == b"run1"
    r.sadd(keys.dirty, "4")  # a write after the snapshot goes to a fresh dirty set
    assert r.smembers(keys.run("run1")) == {b"1", b"2", b"3"}


def test_adopts_an_unfinished_run_with_its_inflight_ids(r, keys):
    r.sadd(keys.run("old"), "1")
    r.sadd(keys.inflight("old"), "2", "3")
    r.hset(keys.meta, "run", "old")
    r.sadd(keys.dirty, "9")
    snap = scripts.snapshot(r, keys, "tok", "new")
    assert (snap.run, snap.size, snap.adopted) == ("old", 3, True)
    assert r.smembers(keys.run("old")) == {b"1", b"2", b"3"}
    assert not r.exists(keys.inflight("old"))
    assert r.smembers(keys.dirty) == {b"9"}  # left for the next snapshot


def test_adopting_an_empty_run_clears_it(r, keys):
    r.hset(keys.meta, "run", "old")
    snap = scripts.snapshot(r, keys, "tok", "new")
    assert (snap.run, snap.size, snap.adopted) == ("old", 0, True)
    assert not r.hexists(keys.meta, "run")


def test_refuses_without_the_lease(r, keys):
    r.sadd(keys.dirty, "1")
    with pytest.raises(LeaseLost):
        scripts.snapshot(r, keys, "other", "run1")
    assert r.smembers(keys.dirty) == {b"1"}
