"""lua/pop.lua"""

import pytest

from syncwd_fast import scripts
from syncwd_fast.errors import LeaseLost
from syncwd_fast.keys import PartitionKeys


@pytest.fixture
def keys(r, prefix):
    k = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, k, "acquire", "tok", 60_000)
    return k


def test_pops_ids_with_their_values_and_marks_them_inflight(r, keys):
    for i in range(5):
        r.set(keys.value(str(i)), b'{"id":%d}' % i)
    r.sadd(keys.run("R"), *map(str, range(5)))
    popped = scripts.pop(r, keys, "R", "tok", 3, 60_000)
    assert len(popped.ids) == 3 and popped.remaining == 2
    assert popped.values == [b'{"id":%s}' % i.encode() for i in popped.ids]
    assert r.smembers(keys.inflight("R")) == {i.encode() for i in popped.ids}
    rest = scripts.pop(r, keys, "R", "tok", 10, 60_000)
    assert sorted(popped.ids + rest.ids) == ["0", "1", "2", "3", "4"] and rest.remaining == 0
    assert scripts.pop(r, keys, "R", "tok", 10, 60_000).ids == []


def test_a_missing_value_comes_back_as_none(r, keys):
    r.sadd(keys.run("R"), "gone")
    popped = scripts.pop(r, keys, "R", "tok", 10, 60_000)
    assert popped.ids == ["gone"] and popped.values == [None]


def test_large_batches_are_chunked(r, keys):
    ids = [str(i) for i in range(9000)]
    r.mset({keys.value(i): i for i in ids})
    r.sadd(keys.run("R"), *ids)
    popped = scripts.pop(r, keys, "R", "tok", 9000, 60_000)
    assert sorted(popped.ids, key=int) == ids
    assert all(v == i.encode() for i, v in zip(popped.ids, popped.values))
    assert r.scard(keys.inflight("R")) == 9000


def test_renews_the_lease(r, keys):
    r.pexpire(keys.lease, 1000)
    scripts.pop(r, keys, "R", "tok", 1, 60_000)
    assert r.pttl(keys.lease) > 30_000


def test_fenced_when_the_lease_is_lost(r, keys):
    r.sadd(keys.run("R"), "1")
    r.set(keys.lease, "someone-else")
    with pytest.raises(LeaseLost):
        scripts.pop(r, keys, "R", "tok", 10, 60_000)
    assert r.smembers(keys.run("R")) == {b"1"}
    assert not r.exists(keys.inflight("R"))
