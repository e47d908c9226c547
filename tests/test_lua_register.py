"""lua/register.lua"""

from syncwd_fast import scripts
from syncwd_fast.keys import REGISTRY_EPOCH, registry_key


def register(r, prefix, entry: bytes, partitions: int, mode: str = "") -> list:
    return scripts.call(r, "register", [registry_key(prefix)], ["t", entry, partitions, mode, REGISTRY_EPOCH, "E1"])


def test_writes_a_new_entry_and_the_epoch_of_a_new_registry(r, prefix):
    assert register(r, prefix, b'{"partitions":2}', 2) == [0]
    assert r.hgetall(registry_key(prefix)) == {b"t": b'{"partitions":2}', REGISTRY_EPOCH.encode(): b"E1"}
    r.hset(registry_key(prefix), REGISTRY_EPOCH, "E0")
    assert register(r, prefix, b'{"partitions":2}', 2) == [0]  # the same entry: nothing written
    assert r.hget(registry_key(prefix), REGISTRY_EPOCH) == b"E0"


def test_another_entry_is_returned_not_replaced_unless_asked(r, prefix):
    register(r, prefix, b'{"partitions":2,"ttl":1}', 2)
    assert register(r, prefix, b'{"partitions":2,"ttl":9}', 2) == [1, b'{"partitions":2,"ttl":1}']
    assert r.hget(registry_key(prefix), "t") == b'{"partitions":2,"ttl":1}'
    assert register(r, prefix, b'{"partitions":2,"ttl":9}', 2, "replace") == [0]
    assert r.hget(registry_key(prefix), "t") == b'{"partitions":2,"ttl":9}'


def test_another_partition_count_is_refused_even_when_replacing(r, prefix):
    register(r, prefix, b'{"partitions":2}', 2)
    assert register(r, prefix, b'{"partitions":3}', 3, "replace") == [2, b'{"partitions":2}']
    assert r.hget(registry_key(prefix), "t") == b'{"partitions":2}'
    r.hset(registry_key(prefix), "t", b"not json")  # a broken entry: replaced only when asked
    assert register(r, prefix, b'{"partitions":3}', 3) == [1, b"not json"]
    assert register(r, prefix, b'{"partitions":3}', 3, "replace") == [0]
