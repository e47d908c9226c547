"""lua/ack.lua"""

import pytest

from syncwd_fast import scripts
from syncwd_fast.errors import LeaseLost
from syncwd_fast.keys import PartitionKeys


@pytest.fixture
def keys(r, prefix):
    k = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, k, "acquire", "tok", 60_000)
    return k


def popped(r, keys, values, count=1000):
    """``values`` (id -> value) snapshotted into run R and popped: the pop numbers."""
    r.mset({keys.value(i): v for i, v in values.items()})
    r.sadd(keys.dirty, *values)
    scripts.snapshot(r, keys, "tok", "R")
    numbers = []
    while True:
        p = scripts.pop(r, keys, "R", "tok", count, 60_000)
        numbers += [n for n, _ in p.pops]
        if not p.remaining:
            return numbers


def test_every_id_of_the_record_gets_the_ttl_but_kept_and_deleted(r, keys):
    pops = popped(r, keys, {"1": b"{}", "2": b"~{}", "3": b"{}"})
    assert scripts.ack(r, keys, "R", "tok", 3600, pops, kept=["3"], deleted=["2"]) == (0, 0)
    assert 3500 < r.ttl(keys.value("1")) <= 3600
    assert not r.exists(keys.value("2"))
    assert r.ttl(keys.value("3")) == -1  # skipped as stale: not durable, no TTL


def test_a_deleted_id_leaves_the_tombstones(r, keys):
    pops = popped(r, keys, {"1": b"~{}", "2": b"{}"})
    r.sadd(keys.tombs, "1", "2")
    scripts.ack(r, keys, "R", "tok", 60, pops, deleted=["1"])
    assert r.smembers(keys.tombs) == {b"2"}


def test_ttl_zero_keeps_values(r, keys):
    pops = popped(r, keys, {"1": b"{}"})
    scripts.ack(r, keys, "R", "tok", 0, pops)
    assert r.ttl(keys.value("1")) == -1 and r.hlen(keys.inflight("R")) == 0


def test_a_redirtied_record_keeps_its_value(r, keys):
    pops = popped(r, keys, {"1": b'{"v":2}', "2": b"~{}"})
    r.sadd(keys.dirty, "1", "2")
    scripts.ack(r, keys, "R", "tok", 3600, pops, deleted=["2"])
    assert r.ttl(keys.value("1")) == -1
    assert r.exists(keys.value("2"))


def test_only_the_records_named_are_acked(r, keys):
    pops = popped(r, keys, {f"id-{i}": b"{}" for i in range(1000)}, count=100)
    assert len(pops) > 2
    assert scripts.ack(r, keys, "R", "tok", 60, pops[:1]) == (0, len(pops) - 1)
    assert r.hexists(keys.meta, "run")  # the run is not over yet
    acked = [i for i in range(1000) if r.ttl(keys.value(f"id-{i}")) > 0]
    assert 0 < len(acked) < 1000
    assert scripts.ack(r, keys, "R", "tok", 60, pops[1:]) == (0, 0) and not r.hexists(keys.meta, "run")


def test_the_last_ack_ends_the_run(r, keys):
    pops = popped(r, keys, {"1": b"{}"})
    assert scripts.ack(r, keys, "R", "tok", 60, pops) == (0, 0)
    assert r.hmget(keys.meta, ["run", "cursor"]) == [None, None]
    assert not r.exists(keys.run("R")) and not r.exists(keys.inflight("R"))


def test_an_ack_sent_again_changes_nothing(r, keys):
    pops = popped(r, keys, {"1": b"{}", "2": b"{}"})
    scripts.ack(r, keys, "R", "tok", 60, pops)
    r.persist(keys.value("1"))
    r.set(keys.value("2"), b"{}")  # a newer write (its SADD to dirty left out to see it)
    scripts.ack(r, keys, "R", "tok", 60, pops)  # its reply was lost, the client sent it again
    assert r.ttl(keys.value("1")) == -1 and r.ttl(keys.value("2")) == -1


def test_landing_clears_an_old_dead_letter(r, keys):
    r.hset(keys.dead, mapping={"1": "{}", "2": "{}"})
    pops = popped(r, keys, {"1": b"{}"})
    scripts.ack(r, keys, "R", "tok", 60, pops)
    assert r.hkeys(keys.dead) == [b"2"]


def test_a_done_id_keeps_its_dead_letter_and_gets_no_ttl(r, keys):
    """A repeated pass merged nothing of a done id (landed before, held by
    another record, dead-lettered in this run): its dead letter stands; a
    kept id (the version guard skipped it: PostgreSQL holds newer) and a
    merged one leave the dead hash."""
    pops = popped(r, keys, {"1": b"{}", "2": b"{}", "3": b"{}"})
    r.hset(keys.dead, mapping={"1": "{}", "2": "{}", "3": "{}"})
    scripts.ack(r, keys, "R", "tok", 3600, pops, kept=["2"], done=["3"])
    assert r.hkeys(keys.dead) == [b"3"]
    assert r.ttl(keys.value("3")) == -1 and r.ttl(keys.value("2")) == -1
    assert 3500 < r.ttl(keys.value("1")) <= 3600


def test_fenced_when_the_lease_is_lost(r, keys):
    pops = popped(r, keys, {"1": b"{}"})
    r.set(keys.lease, "other")
    with pytest.raises(LeaseLost):
        scripts.ack(r, keys, "R", "tok", 60, pops)
    assert r.hlen(keys.inflight("R")) == 1 and r.ttl(keys.value("1")) == -1
