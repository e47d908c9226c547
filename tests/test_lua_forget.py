"""lua/forget.lua"""

from syncwd_fast import scripts
from syncwd_fast.keys import PartitionKeys


def forget(r, keys, token, mode, *ids):
    return scripts.call(r, "forget", [keys.lease, keys.dirty], [token, mode, keys.value_prefix, *ids])


def test_forget_needs_the_lease(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    r.set(keys.value("1"), b"{}")
    assert forget(r, keys, "tok", "all", "1") == -1
    assert r.exists(keys.value("1"))


def test_forget_keeps_dirty_values_and_timed_ones_unless_all(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    r.set(keys.value("timed"), b"{}", ex=100)
    r.set(keys.value("untimed"), b"{}")
    r.set(keys.value("dirty"), b"{}")
    r.sadd(keys.dirty, "dirty")  # written since the partition was removed: a new record
    assert forget(r, keys, "tok", "untimed", "timed", "untimed", "dirty", "absent") == 1
    assert r.exists(keys.value("timed"), keys.value("untimed"), keys.value("dirty")) == 2
    assert forget(r, keys, "tok", "all", "timed", "dirty") == 1
    assert r.exists(keys.value("timed"), keys.value("dirty")) == 1
