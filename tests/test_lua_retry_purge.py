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
    assert scripts.call(r, "purge", [keys.dead, keys.dirty], [keys.value_prefix, 60, "1", "2", "7"]) == 2
    assert r.hkeys(keys.dead) == [b"3"]
    assert 0 < r.ttl(keys.value("1")) <= 60 and r.ttl(keys.value("2")) == -1
    assert scripts.call(r, "purge", [keys.dead, keys.dirty], [keys.value_prefix, 0]) == 1
    assert not r.exists(keys.dead)
