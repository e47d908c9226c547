"""lua/remove.lua"""

from syncwd_fast import scripts
from syncwd_fast.keys import PartitionKeys


def remove(r, keys, token, mode=""):
    return scripts.call(
        r,
        "remove",
        [keys.lease, keys.meta, keys.dirty, keys.dead, keys.tombs, keys.recreated],
        [token, mode, keys.run_prefix],
    )


def test_remove_needs_the_lease(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    r.hset(keys.meta, "table", "{}")
    assert remove(r, keys, "tok", "force") == [-1]
    scripts.lease(r, keys, "acquire", "other", 60_000)
    assert remove(r, keys, "tok", "force") == [-1]
    assert r.exists(keys.meta)


def test_remove_refuses_what_waits_unless_forced(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    r.hset(keys.meta, "table", "{}")
    r.sadd(keys.dirty, "1", "2")
    r.hset(keys.dead, "3", "{}")
    r.sadd(keys.tombs, "2")
    assert remove(r, keys, "tok") == [0, 2, b"", 1]
    assert r.exists(keys.meta, keys.dirty, keys.dead, keys.tombs) == 4
    assert remove(r, keys, "tok", "force") == [1, 2, b"", 1, 4]
    assert r.exists(keys.meta, keys.dirty, keys.dead, keys.tombs) == 0
    assert r.get(keys.lease) == b"tok"  # released by the caller, last


def test_remove_refuses_a_run_and_deletes_it_with_force(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    r.sadd(keys.dirty, *map(str, range(20)))
    scripts.snapshot(r, keys, "tok", "R")
    scripts.pop(r, keys, "R", "tok", 5, 60_000)
    assert remove(r, keys, "tok") == [0, 0, b"R", 0]
    assert r.exists(keys.run("R"), keys.inflight("R")) == 2
    assert remove(r, keys, "tok", "force")[:4] == [1, 0, b"R", 0]
    assert r.exists(keys.run("R"), keys.inflight("R"), scripts.redo_key(keys, "R"), keys.meta) == 0


def test_remove_of_an_empty_partition_deletes_its_meta(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    r.hset(keys.meta, mapping={"table": "{}", "last_run": "R0"})
    r.hset(keys.recreated, "9", "3")
    assert remove(r, keys, "tok") == [1, 0, b"", 0, 2]
    assert not r.exists(keys.meta, keys.recreated)
