"""Review of issue 18: the writer's calls sent again after a pipeline to a
cluster node partly failed (a slot moved: MOVED) must be only the calls that
did not land (and, to keep a partition's order, its later ones): a call that
landed, sent again after another writer wrote the same record, puts the older
value back over the newer one (latest-wins broken: Redis, then PostgreSQL,
go back to the old value)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from redis.cluster import RedisCluster

from syncwd_fast import Syncwd, Table
from syncwd_fast.servers import RedisClusterServers

from . import cluster_ops

PREFIX = "rv18"


@pytest.fixture
def cluster() -> Iterator[RedisClusterServers]:
    yield from cluster_ops.own_cluster()


def connect(cluster: RedisClusterServers) -> RedisCluster:
    return RedisCluster.from_url(cluster.url, decode_responses=True, socket_timeout=10)


def test_a_call_that_landed_is_not_sent_again_over_a_newer_write(cluster):
    table = Table("rv18_t", partitions=16)
    a_client, b_client = connect(cluster), connect(cluster)
    a, b = Syncwd(a_client, prefix=PREFIX), Syncwd(b_client, prefix=PREFIX)

    def slot(partition: int) -> int:
        return int(a_client.keyslot(table.keys(partition, PREFIX).dirty))

    # Two partitions on one master: one will move away, the other stays.
    by_owner: dict[int, list[int]] = {}
    for n in range(table.partitions):
        by_owner.setdefault(cluster_ops.owner(cluster, slot(n)).port, []).append(n)
    moving, staying = next(parts for parts in by_owner.values() if len(parts) >= 2)[:2]
    one = next(str(i) for i in range(10_000) if table.partition(str(i)) == moving)
    other = next(str(i) for i in range(10_000) if table.partition(str(i)) == staying)
    a.update_many(table, [{"id": one, "v": "first"}, {"id": other, "v": "first"}])  # A's map of the slots: now

    source = cluster_ops.owner(cluster, slot(moving))
    target = next(n for n in cluster_ops.masters(cluster) if n is not source)
    cluster_ops.migrate_slot(cluster, slot(moving), target)  # A's client still has it on the source

    sent_again: list[Any] = []
    call = a._call

    def newer_write_first(*args: Any) -> None:
        """B writes `other` while A's pipeline is back and A sends its calls again."""
        if not sent_again:
            b.update(table, {"id": other, "v": "newer, by B"})
        sent_again.append(args[1][0])
        call(*args)

    a._call = newer_write_first  # type: ignore[method-assign]
    # One pipeline to the source: `one`'s call meets MOVED, `other`'s lands.
    a.update_many(table, [{"id": one, "v": "old, by A"}, {"id": other, "v": "old, by A"}])
    assert sent_again, "no call was sent again: the slot did not move under A"
    assert b.get(table, one) == {"id": one, "v": "old, by A"}
    assert b.get(table, other) == {"id": other, "v": "newer, by B"}  # B wrote after A's write landed
    a_client.close()
    b_client.close()
