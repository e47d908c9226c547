"""Review of issue 18: docs/operations.md ("Failover and resharding") said
that a value merged from a dead master and then lost by Redis "is replaced in
PostgreSQL by the replica's value", so that PostgreSQL ends with the value the
promoted replica holds for every record. It is not: a record written and
drained while the replica lagged is neither dirty nor in a run on the replica
(the write's SADD, the snapshot and the pop died with the master), so no drain
looks at it again and PostgreSQL keeps the lost value until the record's next
write. This test pins that window down (the documentation now says so, as the
Sentinel section already did) and that the next write closes it."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.servers import RedisClusterServers

from . import cluster_ops

PREFIX = "rv18m"


@pytest.fixture
def cluster() -> Iterator[RedisClusterServers]:
    yield from cluster_ops.own_cluster(replicas=1)


connect = cluster_ops.connect


def test_a_value_drained_from_a_master_that_died_before_replicating_stays_until_the_next_write(
    cluster, db, dsn, schema
):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL)")
    table = Table(f"{schema}.p", partitions=1)
    with connect(cluster) as rc:
        sw = Syncwd(rc, prefix=PREFIX)
        sw.update_many(table, [{"id": i, "v": i} for i in range(20)])
        assert FastDrainer(rc, dsn, prefix=PREFIX).drain().exit_code == 0
        slot = int(rc.keyslot(table.keys(0, PREFIX).dirty))
    victim = cluster_ops.owner(cluster, slot)
    replica = cluster_ops.replica_of(cluster, victim)
    cluster_ops.caught_up(victim, replica)  # the replica holds v = i, acked and not dirty

    assert replica.process is not None
    # The replica lags: stopped, and its link cut by the master (what the kernel took
    # for a stopped process would still reach it), nothing below reaches it.
    os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        with cluster_ops.client(victim) as m:
            m.execute_command("CLIENT KILL TYPE replica")
        with connect(cluster) as rc:
            Syncwd(rc, prefix=PREFIX).update(table, {"id": 5, "v": 555})  # acknowledged by the master
            assert FastDrainer(rc, dsn, prefix=PREFIX).drain().exit_code == 0  # merged from the master
        assert db.execute(f"SELECT v FROM {table.name} WHERE id = 5").fetchone()[0] == 555
        cluster_ops.kill(victim)  # the write, the snapshot, the pop and the ack die with it
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)
    assert cluster_ops.wait_failed_over(cluster, slot, victim) is replica

    with connect(cluster) as rc:
        sw = Syncwd(rc, prefix=PREFIX)
        assert sw.get(table, 5) == {"id": 5, "v": 5}  # Redis lost the write (its own limit)
        report = FastDrainer(rc, dsn, prefix=PREFIX, retries=8).drain()
        assert (report.exit_code, report.upserted) == (0, 0), report.aborted  # nothing dirty on the replica
        # What the documentation now says: the lost value stays in PostgreSQL...
        assert db.execute(f"SELECT v FROM {table.name} WHERE id = 5").fetchone()[0] == 555
        # ...until the record's next write, which lands as any other.
        sw.update(table, {"id": 5, "v": 6})
        assert FastDrainer(rc, dsn, prefix=PREFIX, retries=8).drain().exit_code == 0
    assert dict(db.execute(f"SELECT id, v FROM {table.name}").fetchall()) == {i: 6 if i == 5 else i for i in range(20)}
