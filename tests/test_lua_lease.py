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


def test_takeover_replaces_only_the_holder_named(r, prefix):
    """A drainer that found the holder dead takes the lease only if that
    holder still has it: compare and set, with the new holder's names."""
    keys = PartitionKeys(prefix, "t", 0)
    assert scripts.lease(r, keys, "acquire", "a", 60_000, "host pid 1 since x", b'{"pid": 1}')
    assert r.hmget(keys.meta, "holder", "holder_id") == [b"host pid 1 since x", b'{"pid": 1}']
    assert not scripts.lease(r, keys, "takeover", "b", 1000, "host pid 2 since y", b'{"pid": 2}', b"someone-else")
    assert r.get(keys.lease) == b"a"
    assert scripts.lease(r, keys, "takeover", "b", 1000, "host pid 2 since y", b'{"pid": 2}', b"a")
    assert r.get(keys.lease) == b"b" and 0 < r.pttl(keys.lease) <= 1000
    assert r.hmget(keys.meta, "holder", "holder_id") == [b"host pid 2 since y", b'{"pid": 2}']
    assert scripts.lease(r, keys, "release", "b")
    assert r.hmget(keys.meta, "holder", "holder_id") == [None, None]
    assert not scripts.lease(r, keys, "takeover", "c", 1000, "h", b"{}", b"b")  # nothing to take over
    assert not r.exists(keys.lease)
