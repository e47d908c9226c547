"""lua/retry.lua and lua/purge.lua"""

from syncwd_fast import scripts
from syncwd_fast.keys import PartitionKeys


def test_retry_marks_dead_ids_dirty_and_keeps_their_entries(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    r.hset(keys.dead, mapping={"1": "{}", "2": "{}", "3": "{}"})
    assert scripts.call(r, "retry", [keys.dead, keys.dirty], ["1", "9"]) == 1  # 9 is not dead: skipped
    assert r.smembers(keys.dirty) == {b"1"}
    assert scripts.call(r, "retry", [keys.dead, keys.dirty], []) == 3
    assert r.smembers(keys.dirty) == {b"1", b"2", b"3"}
    assert r.hlen(keys.dead) == 3


def test_purge_forgets_entries_and_starts_the_value_ttl(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    r.hset(keys.dead, mapping={"1": "{}", "2": "{}", "3": "{}"})
    r.set(keys.value("1"), b"x")
    r.set(keys.value("2"), b"y")
    r.sadd(keys.dirty, "2")  # re-dirtied: its new value is still to be drained
    assert purge(r, keys, 60, "1", "2", "7") == 2
    assert r.hkeys(keys.dead) == [b"3"]
    assert 0 < r.ttl(keys.value("1")) <= 60 and r.ttl(keys.value("2")) == -1
    assert purge(r, keys, 0) == 1
    assert not r.exists(keys.dead)


def purge(r, keys, ttl, *ids, at_most=""):
    return scripts.call(
        r,
        "purge",
        [keys.dead, keys.dirty, keys.meta, keys.tombs, keys.recreated],
        [keys.value_prefix, ttl, keys.run_prefix, at_most, *ids],
    )


def test_purge_gives_no_ttl_to_a_newer_value_in_the_active_run_or_in_flight(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    ids = ["queued", "flying", "dirty", "idle", "old-run"]
    r.hset(keys.dead, mapping={i: "{}" for i in ids})
    for i in ids:
        r.set(keys.value(i), b"{}")
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    r.sadd(keys.dirty, "flying")
    scripts.snapshot(r, keys, "tok", "R")
    scripts.pop(r, keys, "R", "tok", 10, 60_000)  # popped, its batch not committed yet
    r.sadd(keys.run("R"), "queued")  # snapshotted, not popped yet:
    r.hset(keys.meta, "cursor", "0")  # the run set's pass is not done
    r.sadd(keys.dirty, "dirty")
    r.sadd(keys.run("OLD"), "old-run")  # a set meta does not name is no run: nothing drains it
    assert purge(r, keys, 60) == 5
    assert not r.exists(keys.dead)
    assert {i: r.ttl(keys.value(i)) for i in ["queued", "flying", "dirty"]} == {"queued": -1, "flying": -1, "dirty": -1}
    assert 0 < r.ttl(keys.value("idle")) <= 60 and 0 < r.ttl(keys.value("old-run")) <= 60


def test_purge_by_id_checks_the_run_named_in_meta(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    r.hset(keys.dead, mapping={"1": "{}", "2": "{}"})
    r.set(keys.value("1"), b"{}")
    r.set(keys.value("2"), b"{}")
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    r.sadd(keys.dirty, "1")
    scripts.snapshot(r, keys, "tok", "R2")
    scripts.pop(r, keys, "R2", "tok", 10, 60_000)  # in flight
    r.sadd(keys.run("R1"), "2")  # not the active run
    assert purge(r, keys, 60, "1", "2") == 2
    assert r.ttl(keys.value("1")) == -1 and 0 < r.ttl(keys.value("2")) <= 60


def test_purge_reads_the_records_to_redo_and_an_earlier_version_s_in_flight_set(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    r.hset(keys.dead, mapping={"redo": "{}", "old": "{}"})
    r.set(keys.value("redo"), b"{}")
    r.set(keys.value("old"), b"{}")
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    r.sadd(keys.dirty, "redo")
    scripts.snapshot(r, keys, "tok", "R")
    scripts.pop(r, keys, "R", "tok", 10, 60_000)
    scripts.snapshot(r, keys, "tok", "R")  # adopted: the record waits to be popped again
    assert r.llen(scripts.redo_key(keys, "R")) == 1
    assert purge(r, keys, 60, "redo") == 1 and r.ttl(keys.value("redo")) == -1
    r.hset(keys.meta, "run", "V1")
    r.sadd(keys.inflight("V1"), "old")
    assert purge(r, keys, 60, "old") == 1 and r.ttl(keys.value("old")) == -1


def test_purge_gives_the_ttl_to_a_value_of_a_run_set_read_through(r, prefix):
    # The run set keeps its ids until the run ends; once its pass is done, an id
    # in it that is not in flight is no longer pending.
    keys = PartitionKeys(prefix, "t", 0)
    r.hset(keys.dead, "read", "{}")
    r.set(keys.value("read"), b"{}")
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    r.sadd(keys.dirty, "read", "other")
    scripts.snapshot(r, keys, "tok", "R")
    [(number, ids)] = scripts.pop(r, keys, "R", "tok", 10, 60_000).pops
    assert sorted(ids) == ["other", "read"] and r.hget(keys.meta, "cursor") == b"done"
    scripts.dead(r, keys, "R", "tok", [("read", "bad")], pops=[number])  # out of the record
    assert r.sismember(keys.run("R"), "read") and purge(r, keys, 60, "read") == 1
    assert 0 < r.ttl(keys.value("read")) <= 60


def test_purge_at_most_forgets_only_entries_made_by_then(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    entries = {"old": '{"at": 100.5}', "edge": '{"at": 200}', "new": '{"at": 300.25}', "unknown": "{}", "bad": "x"}
    r.hset(keys.dead, mapping=entries)
    for record_id in entries:
        r.set(keys.value(record_id), b"v")
    # By id: "new" was made again since the caller read it (a later time): kept.
    assert purge(r, keys, 60, "old", "new", at_most="200") == 1
    assert 0 < r.ttl(keys.value("old")) <= 60 and r.ttl(keys.value("new")) == -1
    # Every entry: those made at or before the time; none without a readable time.
    assert purge(r, keys, 60, at_most="250") == 1
    assert sorted(r.hkeys(keys.dead)) == [b"bad", b"new", b"unknown"]
    assert purge(r, keys, 60) == 3  # "" purges any
    assert not r.exists(keys.dead)
