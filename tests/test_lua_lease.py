"""lua/lease.lua"""

import time

from syncwd_fast import scripts
from syncwd_fast.keys import PartitionKeys


def test_acquire_is_exclusive_and_reentrant(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    assert scripts.lease(r, keys, "acquire", "a", 10_000)
    assert not scripts.lease(r, keys, "acquire", "b", 10_000)
    assert scripts.lease(r, keys, "acquire", "a", 10_000)
    assert r.get(keys.lease) == b"a"


def test_renew_and_release_only_by_the_owner(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, keys, "acquire", "a", 1000)
    assert not scripts.lease(r, keys, "renew", "b", 60_000)
    assert scripts.lease(r, keys, "renew", "a", 60_000)
    assert r.pttl(keys.lease) > 30_000
    assert not scripts.lease(r, keys, "release", "b")
    assert r.exists(keys.lease)
    assert scripts.lease(r, keys, "release", "a")
    assert not r.exists(keys.lease)


def test_an_expired_lease_goes_to_the_next_drainer(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    assert scripts.lease(r, keys, "acquire", "a", 50)
    time.sleep(0.1)
    assert not scripts.lease(r, keys, "renew", "a", 1000)
    assert scripts.lease(r, keys, "acquire", "b", 1000)
