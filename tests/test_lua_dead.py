"""lua/dead.lua"""

import pytest

from syncwd_fast import scripts
from syncwd_fast.errors import LeaseLost
from syncwd_fast.keys import PartitionKeys

from .helpers import dead_entries, in_flight


@pytest.fixture
def keys(r, prefix):
    k = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, k, "acquire", "tok", 60_000)
    return k


def popped(r, keys, ids):
    r.sadd(keys.dirty, *ids)
    scripts.snapshot(r, keys, "tok", "R")
    return [n for n, _ in scripts.pop(r, keys, "R", "tok", 100, 60_000).pops]


def test_moves_ids_to_the_dead_hash_with_value_and_reason(r, keys):
    r.set(keys.value("1"), b"not json")
    pops = popped(r, keys, ["1", "2", "3"])
    assert scripts.dead(r, keys, "R", "tok", [("1", "invalid JSON"), ("2", "value missing")], pops=pops) == 2
    dead = dead_entries(r, keys)
    assert dead["1"]["value"] == "not json" and dead["1"]["error"] == "invalid JSON" and dead["1"]["attempts"] == 1
    assert dead["2"]["value"] is None and dead["2"]["error"] == "value missing"
    assert dead["1"]["at"] > 1.7e9
    assert r.get(keys.value("1")) == b"not json"  # kept for a retry


def test_takes_the_ids_out_of_their_record(r, keys):
    pops = popped(r, keys, ["1", "2", "3"])
    scripts.dead(r, keys, "R", "tok", [("1", "x"), ("2", "y")], pops=pops)
    assert in_flight(r, keys, "R") == ["3"]
    scripts.dead(r, keys, "R", "tok", [("3", "z")], pops=pops)
    assert not r.exists(keys.inflight("R"))  # an empty record goes


def test_counts_attempts(r, keys):
    r.set(keys.value("1"), b"x")
    scripts.dead(r, keys, "R", "tok", [("1", "first")], at=1765000000.125)
    scripts.dead(r, keys, "R", "tok", [("1", "second")], at=1765000001.5)
    assert dead_entries(r, keys)["1"]["attempts"] == 2
    assert dead_entries(r, keys)["1"]["error"] == "second"
    scripts.dead(r, keys, "R2", "tok", [("1", "third")], at=1765000001.5)  # another run, the same second
    assert dead_entries(r, keys)["1"]["attempts"] == 3


def test_the_same_call_sent_again_counts_no_second_attempt(r, keys):
    """A call whose reply was lost is sent again (the client's Retry): same
    time, same run. Its entry is written again, not counted twice."""
    r.set(keys.value("1"), b"x")
    for _ in range(2):
        scripts.dead(r, keys, "R", "tok", [("1", "first")], at=1765000000.123)
    assert dead_entries(r, keys)["1"]["attempts"] == 1


def test_fenced_when_the_lease_is_lost(r, keys):
    pops = popped(r, keys, ["1"])
    r.set(keys.lease, "other")
    with pytest.raises(LeaseLost):
        scripts.dead(r, keys, "R", "tok", [("1", "x")], pops=pops)
    assert not r.exists(keys.dead) and in_flight(r, keys, "R") == ["1"]


def test_persists_the_value_it_keeps(r, keys):
    # A value may carry a TTL it must lose now (e.g. one a purge gave while
    # this newer value was in flight): it is the record's only copy.
    r.set(keys.value("1"), b"{}", ex=60)
    pops = popped(r, keys, ["1", "2"])
    assert scripts.dead(r, keys, "R", "tok", [("1", "rejected"), ("2", "value missing")], pops=pops) == 2
    assert r.ttl(keys.value("1")) == -1
    assert not r.exists(keys.value("2"))  # nothing to persist, nothing created
