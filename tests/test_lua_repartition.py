"""lua/repartition.lua"""

import pytest
import redis

from syncwd_fast import scripts
from syncwd_fast.keys import PartitionKeys


def call(r, op, keys_, *args):
    return scripts.call(r, "repartition", keys_, [op, "tok", *args])


def copy_keys(k):
    return [k.lease, k.dirty, k.meta, k.tombs, k.recreated]


def drop_keys(k):
    return [k.lease, k.dirty, k.tombs, k.recreated]


@pytest.fixture
def ab(r, prefix):
    a, b = PartitionKeys(prefix, "t", 0), PartitionKeys(prefix, "t", 1)
    for k in (a, b):
        scripts.lease(r, k, "acquire", "tok", 60_000)
    return a, b


def test_every_operation_needs_the_lease(r, prefix):
    k = PartitionKeys(prefix, "t", 0)
    assert call(r, "close", [k.lease, k.meta], "{}", "", 4) == -1
    assert call(r, "open", [k.lease, k.meta]) == -1
    assert call(r, "copy", copy_keys(k), k.value_prefix, "1", "{}", "", -1) == -1
    assert call(r, "drop", drop_keys(k), k.value_prefix, "1", "{}") == -1
    assert not r.exists(k.meta, k.dirty)
    with pytest.raises(redis.ResponseError, match="unknown operation"):
        scripts.lease(r, k, "acquire", "tok", 60_000)
        call(r, "nope", [k.lease])


def test_close_sets_the_entry_and_the_mark(r, ab):
    a, _ = ab
    assert call(r, "close", [a.lease, a.meta], "NEW", "repartitioned", 4) == 1
    assert r.hmget(a.meta, "table", "closed", "moving") == [b"NEW", b"repartitioned", b"4"]
    assert call(r, "close", [a.lease, a.meta], "NEW", "", 4) == 1
    assert r.hmget(a.meta, "table", "closed", "moving") == [b"NEW", None, b"4"]


def test_open_clears_the_moving_mark_only(r, ab):
    a, _ = ab
    assert call(r, "close", [a.lease, a.meta], "NEW", "repartitioned", 4) == 1
    assert call(r, "open", [a.lease, a.meta]) == 1
    assert r.hmget(a.meta, "table", "closed", "moving") == [b"NEW", b"repartitioned", None]


def test_copy_then_drop_moves_a_waiting_record(r, ab):
    a, b = ab
    r.set(a.value("1"), b'{"id":1}')
    r.sadd(a.dirty, "1")
    assert call(r, "copy", copy_keys(b), b.value_prefix, "1", b'{"id":1}', "", -1) == 1
    assert r.get(b.value("1")) == b'{"id":1}' and r.sismember(b.dirty, "1") and r.ttl(b.value("1")) == -1
    assert call(r, "drop", drop_keys(a), a.value_prefix, "1", b'{"id":1}') == 1
    assert not r.exists(a.value("1")) and not r.sismember(a.dirty, "1")


def test_copy_keeps_a_newer_write_and_drop_keeps_a_changed_value(r, ab):
    a, b = ab
    r.set(b.value("1"), b'{"id":1,"v":"new"}')
    r.sadd(b.dirty, "1")
    assert call(r, "copy", copy_keys(b), b.value_prefix, "1", b'{"id":1,"v":"old"}', "", -1) == 0
    assert r.get(b.value("1")) == b'{"id":1,"v":"new"}'
    r.set(a.value("2"), b"changed")
    r.sadd(a.dirty, "2")
    assert call(r, "drop", drop_keys(a), a.value_prefix, "2", b"copied") == 0
    assert r.get(a.value("2")) == b"changed" and r.sismember(a.dirty, "2")


def test_copy_carries_tombstones_and_new_rows(r, ab):
    a, b = ab
    assert call(r, "copy", copy_keys(b), b.value_prefix, "t", b'~{"id":1}', "", -1, "n", b"{}", "r", -1) == 2
    assert r.smembers(b.tombs) == {b"t"} and r.hget(b.recreated, "n") == b"1"
    # a pending delete whose id has a newer write in the new partition: that write is a new row
    r.set(b.value("x"), b'{"id":"x"}')
    r.sadd(b.dirty, "x")
    assert call(r, "copy", copy_keys(b), b.value_prefix, "x", b'~{"id":"x"}', "", -1) == 0
    assert r.hget(b.recreated, "x") == b"2"


def test_copy_of_a_cached_value_keeps_its_ttl_and_never_replaces(r, ab):
    _, b = ab
    assert call(r, "copy", copy_keys(b), b.value_prefix, "c", b"{}", "c", 50_000) == 1
    assert 40 < r.ttl(b.value("c")) <= 50 and not r.sismember(b.dirty, "c")
    r.set(b.value("d"), b"there")
    assert call(r, "copy", copy_keys(b), b.value_prefix, "d", b"{}", "c", -1) == 0
    assert r.get(b.value("d")) == b"there"
