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


def test_expires_durable_values_and_deletes_tombstones(r, keys):
    r.set(keys.value("1"), b"{}")
    r.set(keys.value("2"), b"~{}")
    r.sadd(keys.inflight("R"), "1", "2")
    r.sadd(keys.run("R"), "3")
    r.hset(keys.meta, "run", "R")
    assert scripts.ack(r, keys, "R", "tok", 3600, ["1"], ["2"]) == (1, 0)
    assert 3500 < r.ttl(keys.value("1")) <= 3600
    assert not r.exists(keys.value("2"))
    assert r.hget(keys.meta, "run") == b"R"  # the run is not over yet


def test_ttl_zero_keeps_values(r, keys):
    r.set(keys.value("1"), b"{}")
    r.sadd(keys.inflight("R"), "1")
    scripts.ack(r, keys, "R", "tok", 0, ["1"], [])
    assert r.ttl(keys.value("1")) == -1


def test_a_redirtied_record_keeps_its_value(r, keys):
    r.set(keys.value("1"), b'{"v":2}')
    r.set(keys.value("2"), b"~{}")
    r.sadd(keys.inflight("R"), "1", "2")
    r.sadd(keys.dirty, "1", "2")
    scripts.ack(r, keys, "R", "tok", 3600, ["1"], ["2"])
    assert r.ttl(keys.value("1")) == -1
    assert r.exists(keys.value("2"))


def test_the_last_ack_ends_the_run(r, keys):
    r.sadd(keys.inflight("R"), "1")
    r.hset(keys.meta, "run", "R")
    assert scripts.ack(r, keys, "R", "tok", 60, ["1"], []) == (0, 0)
    assert not r.hexists(keys.meta, "run")


def test_landing_clears_an_old_dead_letter(r, keys):
    r.hset(keys.dead, "1", "{}")
    r.hset(keys.dead, "2", "{}")
    r.sadd(keys.inflight("R"), "1")
    scripts.ack(r, keys, "R", "tok", 60, ["1"], [])
    assert r.hkeys(keys.dead) == [b"2"]


def test_many_ids_are_chunked(r, keys):
    ids = [str(i) for i in range(9000)]
    r.mset({keys.value(i): b"{}" for i in ids})
    r.sadd(keys.inflight("R"), *ids)
    scripts.ack(r, keys, "R", "tok", 60, ids[:4500], ids[4500:])
    assert r.scard(keys.inflight("R")) == 0
    assert r.ttl(keys.value("4499")) > 0 and not r.exists(keys.value("4500"))


def test_fenced_when_the_lease_is_lost(r, keys):
    r.sadd(keys.inflight("R"), "1")
    r.set(keys.value("1"), b"{}")
    r.set(keys.lease, "other")
    with pytest.raises(LeaseLost):
        scripts.ack(r, keys, "R", "tok", 60, ["1"], [])
    assert r.smembers(keys.inflight("R")) == {b"1"} and r.ttl(keys.value("1")) == -1
