"""lua/write.lua"""

import pytest
import redis

from syncwd_fast import scripts
from syncwd_fast.keys import PartitionKeys
from syncwd_fast.table import Table

ENTRY = Table("t").to_registry()


def test_write_sets_values_and_marks_dirty(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    n = scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("1", b'{"id":1}'), ("2", b'{"id":2}')]))
    assert n == -2  # negated: the partition's first write (meta had no entry)
    assert scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("3", b'{"id":3}')])) == 1
    assert r.get(keys.value("1")) == b'{"id":1}'
    assert r.smembers(keys.dirty) == {b"1", b"2", b"3"}


def test_write_clears_an_existing_ttl(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    r.set(keys.value("1"), b"old", ex=100)
    scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("1", b'{"id":1}')]))
    assert r.ttl(keys.value("1")) == -1


def test_write_chunks_beyond_luas_unpack_limit(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    items = [(str(i), b'{"id":%d}' % i) for i in range(9000)]
    assert scripts.call(r, "write", *scripts.write_args(keys, ENTRY, items)) == -9000
    assert r.scard(keys.dirty) == 9000
    assert r.get(keys.value("8999")) == b'{"id":8999}'


def test_write_is_reloaded_after_script_flush(private_redis):
    r = redis.Redis.from_url(private_redis.url)
    keys = PartitionKeys("p", "t", 0)
    scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("0", b"{}")]))
    r.script_flush()
    assert scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("1", b"{}")])) == 1
    assert r.script_exists(scripts.script("write").sha) == [True]


def test_write_refuses_an_entry_of_another_partition_count_and_writes_nothing(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    four, other_ttl = Table("t", partitions=4).to_registry(), Table("t", partitions=1, ttl=5).to_registry()
    r.hset(keys.meta, "table", four)  # a repartition closed the partition (repartition.lua "close")
    with pytest.raises(redis.ResponseError, match=r"^SYNCWD_PARTITIONS 4 1"):
        scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("1", b'{"id":1}')]))
    assert not r.exists(keys.value("1"), keys.dirty) and r.hget(keys.meta, "table") == four
    r.hset(keys.meta, "table", other_ttl)  # other options, the same count: the entry is replaced, as before
    assert scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("1", b'{"id":1}')])) == 1
    assert r.hget(keys.meta, "table") == ENTRY
