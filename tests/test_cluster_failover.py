"""Redis Cluster failover and resharding in the middle of a drain, with
writers writing all along: a master killed with SIGKILL (its replica takes
over), a slot that holds a partition moved to another master, scripts missing
from a promoted replica's cache. PostgreSQL ends with every record's latest
value.

What Redis itself may lose is kept apart from what syncwd-fast must not: a
write acknowledged by a master and not yet replicated when it dies is gone
from Redis (replication is asynchronous), and no drain can land it. The
strict tests let the replica catch up right before the kill (as WAIT would),
so every acknowledged write must land; the CLI test kills without that and
holds PostgreSQL to what the promoted replica holds."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis as redis_lib

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.faults import is_transient, slot_moving
from syncwd_fast.scripts import script
from syncwd_fast.servers import RedisClusterServers

from . import cluster_ops
from .helpers import cli, drain_command, last_json, wait_for

PREFIX = "fo"


@pytest.fixture
def cluster() -> Iterator[RedisClusterServers]:
    """3 masters, a replica each; a test may kill nodes, so one cluster per test."""
    yield from cluster_ops.own_cluster(replicas=1)


connect = cluster_ops.connect


class Writer(threading.Thread):
    """Writes batches of random records with rising values until stopped,
    each batch again until Redis takes it; ``latest`` holds each record's
    value of its last acknowledged write. ``gate`` is held per batch, so a
    test can hold the writer between two batches."""

    def __init__(self, cluster: RedisClusterServers, table: Table, records: int) -> None:
        super().__init__(name="writer", daemon=True)
        self.client = connect(cluster)
        self.sw = Syncwd(self.client, prefix=PREFIX)
        self.table = table
        self.records = records
        self.latest: dict[int, int] = {}
        self.gate = threading.Lock()
        self.halt = threading.Event()
        self.errors: list[str] = []
        self.batches = 0
        self.failed: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(7)
        value = 1_000_000
        deadline = time.monotonic() + 120
        try:
            while not self.halt.is_set() and time.monotonic() < deadline:
                ids = rng.sample(range(self.records), 20)
                rows = []
                for i in ids:
                    value += 1
                    rows.append({"id": i, "v": value})
                with self.gate:
                    self._write(rows)
                for row in rows:
                    self.latest[row["id"]] = row["v"]
                self.batches += 1
                time.sleep(0.002)
        except BaseException as exc:  # said by stop()
            self.failed = exc

    def _write(self, rows: list[dict[str, int]]) -> None:
        for _ in range(400):  # a failover takes seconds; each try fails fast or waits for a timeout
            try:
                self.sw.update_many(self.table, rows)
                return
            except redis_lib.RedisError as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.05)
        raise AssertionError(f"the writer gave up: {self.errors[-3:]}")

    def stop(self) -> dict[int, int]:
        self.halt.set()
        self.join(60)
        assert not self.is_alive(), "the writer did not stop"
        if self.failed:
            raise self.failed
        self.client.close()
        return self.latest


def setup_table(db: Any, schema: str, cluster: RedisClusterServers, records: int) -> Table:
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL)")
    table = Table(f"{schema}.p", partitions=4)
    with connect(cluster) as rc:
        Syncwd(rc, prefix=PREFIX).update_many(table, [{"id": i, "v": i} for i in range(records)])
    return table


def in_postgres(db: Any, table: Table) -> dict[int, int]:
    return dict(db.execute(f"SELECT id, v FROM {table.name}").fetchall())


def in_redis(cluster: RedisClusterServers, table: Table, ids: range) -> dict[int, int]:
    with connect(cluster) as rc:
        sw = Syncwd(rc, prefix=PREFIX)
        return {i: got["v"] for i in ids if (got := sw.get(table, i)) is not None}


def slot_of(cluster: RedisClusterServers, table: Table, partition: int) -> int:
    with connect(cluster) as rc:
        return int(rc.keyslot(table.keys(partition, PREFIX).dirty))


def test_a_master_killed_mid_drain_fails_over_and_every_acknowledged_write_lands(cluster, db, dsn, schema):
    records = 8000
    table = setup_table(db, schema, cluster, records)
    slot = slot_of(cluster, table, 0)
    victim = cluster_ops.owner(cluster, slot)
    replica = cluster_ops.replica_of(cluster, victim)
    writer = Writer(cluster, table, records)
    writer.start()
    assert wait_for(lambda: writer.batches >= 20, 30), "the writer never got going"
    killed_at: list[float] = []

    def kill_after_the_first_batch(name: str, partition: int, rows: int) -> None:
        """Between a batch's merge and its ack (the merge thread)."""
        if partition != 0 or killed_at:
            return
        with writer.gate:  # no write of the writer's between the catch-up and the kill
            cluster_ops.caught_up(victim, replica)
            cluster_ops.kill(victim)
            killed_at.append(time.monotonic())

    rc = connect(cluster)
    report = FastDrainer(rc, dsn, batch=500, prefix=PREFIX, retries=8, on_batch=kill_after_the_first_batch).drain()
    assert killed_at, "the drain never reached partition 0"
    promoted = cluster_ops.wait_failed_over(cluster, slot, victim)
    assert promoted is replica
    # Writes go on through the failover, and a while after it.
    batches = writer.batches
    assert wait_for(lambda: writer.batches >= batches + 20, 30), (len(writer.errors), writer.errors[-3:])
    latest = writer.stop()
    if report.exit_code != 0:  # gave up during the failover: everything is resumable
        assert report.exit_code == 3, report.aborted
    final = FastDrainer(rc, dsn, batch=500, prefix=PREFIX, retries=8).drain()
    assert final.exit_code == 0, final.aborted
    expected = {i: latest.get(i, i) for i in range(records)}
    assert in_redis(cluster, table, range(records)) == expected  # Redis lost nothing that was acknowledged...
    assert in_postgres(db, table) == expected  # ...and neither did the drain
    rc.close()


def test_a_slot_moved_mid_drain_loses_nothing(cluster, db, dsn, schema):
    records = 8000
    table = setup_table(db, schema, cluster, records)
    slot = slot_of(cluster, table, 0)
    source = cluster_ops.owner(cluster, slot)
    target = next(n for n in cluster_ops.masters(cluster) if n is not source)
    writer = Writer(cluster, table, records)
    writer.start()
    assert wait_for(lambda: writer.batches >= 20, 30), "the writer never got going"
    moves: list[threading.Thread] = []
    moved: list[int] = []

    def move_after_the_first_batch(name: str, partition: int, rows: int) -> None:
        if partition != 0 or moves:
            return
        move = threading.Thread(
            target=lambda: moved.append(cluster_ops.migrate_slot(cluster, slot, target, keys_per_step=50))
        )
        moves.append(move)
        move.start()

    rc = connect(cluster)
    report = FastDrainer(rc, dsn, batch=200, prefix=PREFIX, on_batch=move_after_the_first_batch).drain()
    assert moves, "the drain never reached partition 0"
    moves[0].join(60)
    assert moved and moved[0] > 1000, moved
    assert cluster_ops.owner(cluster, slot) is target
    batches = writer.batches
    assert wait_for(lambda: writer.batches >= batches + 20, 30), (len(writer.errors), writer.errors[-3:])
    latest = writer.stop()
    assert not writer.errors  # the writer waited for the slot rather than fail
    assert report.exit_code == 0, report.aborted  # the drain retried TRYAGAIN rather than stop
    final = FastDrainer(rc, dsn, batch=500, prefix=PREFIX).drain()
    assert final.exit_code == 0, final.aborted
    expected = {i: latest.get(i, i) for i in range(records)}
    assert in_redis(cluster, table, range(records)) == expected
    assert in_postgres(db, table) == expected
    rc.close()


SCRIPTS = ("write", "lease", "snapshot", "pop", "ack")


def test_a_promoted_replica_lacks_the_scripts_and_they_are_loaded_again(cluster, db, dsn, schema):
    """Redis replicates a script's effects, not the script: a promoted
    replica answers NOSCRIPT to every EVALSHA, and the writer and the drain
    send the source once instead."""
    records = 2000
    table = setup_table(db, schema, cluster, records)
    rc = connect(cluster)
    assert FastDrainer(rc, dsn, prefix=PREFIX).drain().exit_code == 0
    slot = slot_of(cluster, table, 0)
    victim = cluster_ops.owner(cluster, slot)
    replica = cluster_ops.replica_of(cluster, victim)
    shas = [script(name).sha for name in SCRIPTS]
    with cluster_ops.client(victim) as m, cluster_ops.client(replica) as r:
        assert m.script_exists(*shas) == [True] * len(shas)
        assert r.script_exists(*shas) == [False] * len(shas)
    sw = Syncwd(rc, prefix=PREFIX)
    sw.update_many(table, [{"id": i, "v": -i} for i in range(0, records, 2)])
    cluster_ops.caught_up(victim, replica)
    cluster_ops.kill(victim)
    assert cluster_ops.wait_failed_over(cluster, slot, victim) is replica

    with cluster_ops.client(replica) as r:
        assert r.script_exists(*shas) == [False] * len(shas)
    one = next(i for i in range(1, records, 2) if table.partition(str(i)) == 0)
    sw.update(table, {"id": one, "v": -one})  # one call: EVALSHA, NOSCRIPT, EVAL
    sw.update_many(table, [{"id": i, "v": -i} for i in range(1, records, 2)])  # pipelined per node
    report = FastDrainer(rc, dsn, prefix=PREFIX, retries=0).drain()  # NOSCRIPT is no fault to retry
    assert (report.exit_code, report.upserted) == (0, records), report.aborted
    with cluster_ops.client(replica) as r:
        assert r.script_exists(*shas) == [True] * len(shas)
    assert in_postgres(db, table) == {i: -i for i in range(records)}
    rc.close()


def test_a_drainer_kept_across_a_failover_drains_after_it(cluster, db, dsn, schema):
    """`schedule` (and a long-lived program) keeps one drainer and its client
    from run to run. The drain lists the primaries from the client's map of
    the slots and asks each on that node's own client, which never learns of
    a failover: every later drain failed on the dead node (exit 3) until the
    map is read again, as the retry does now."""
    records = 2000
    table = setup_table(db, schema, cluster, records)
    drainer = FastDrainer(connect(cluster), dsn, prefix=PREFIX, retries=2)
    assert drainer.drain().exit_code == 0
    slot = slot_of(cluster, table, 0)
    victim = cluster_ops.owner(cluster, slot)
    with connect(cluster) as rc:
        Syncwd(rc, prefix=PREFIX).update_many(table, [{"id": i, "v": -i} for i in range(records)])
    cluster_ops.caught_up(victim, cluster_ops.replica_of(cluster, victim))
    cluster_ops.kill(victim)
    cluster_ops.wait_failed_over(cluster, slot, victim)
    report = drainer.drain()
    assert (report.exit_code, report.upserted) == (0, records), report.aborted
    assert in_postgres(db, table) == {i: -i for i in range(records)}


def merging(db: Any, table: Table) -> bool:
    """A drain's merge waits for the test's lock on ``table``."""
    waiting = db.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
        " WHERE NOT l.granted AND l.relation = %s::regclass AND a.application_name = 'syncwd-fast'",
        (table.name,),
    ).fetchone()[0]
    return bool(waiting)


def test_cli_drain_through_a_master_killed_mid_merge(cluster, db, dsn, schema, base_dsn):
    """`syncwd-fast drain --cluster` as a process: its first merge is held on
    a table lock, the master of that partition is killed with no catch-up
    (writes it acknowledged last may die with it: Redis's own limit), the lock
    goes. The drain finishes (or exits 3 and the next one does), and
    PostgreSQL ends with what the promoted replica holds for every record."""
    records = 8000
    table = setup_table(db, schema, cluster, records)
    slot = slot_of(cluster, table, 0)
    victim = cluster_ops.owner(cluster, slot)
    on_victim = {n for n in range(table.partitions) if cluster_ops.owner(cluster, slot_of(cluster, table, n)) is victim}
    writer = Writer(cluster, table, records)
    writer.start()
    assert wait_for(lambda: writer.batches >= 20, 30), "the writer never got going"
    command = [*drain_command(cluster.url, dsn, PREFIX, "--cluster", "--batch", "500", "--json")]
    with psycopg.connect(base_dsn) as locker:
        locker.execute(f"LOCK TABLE {table.name} IN SHARE MODE")  # a merge's INSERT waits for it
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert wait_for(lambda: merging(db, table), 30), "the drain never reached its first merge"
            cluster_ops.kill(victim)
            locker.rollback()
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    cluster_ops.wait_failed_over(cluster, slot, victim)
    batches = writer.batches
    assert wait_for(lambda: writer.batches >= batches + 20, 30), (len(writer.errors), writer.errors[-3:])
    latest = writer.stop()
    first = last_json(out)
    assert proc.returncode in (0, 3), err
    assert first["exit_code"] == proc.returncode
    # Any node alive will do (the one the first drain was given may be the one killed).
    url = cluster_ops.live(cluster)[0].url
    again = cli("drain", "--redis", url, "--cluster", "--dsn", dsn, "--prefix", PREFIX, "--json")
    assert again.returncode == 0, again.stderr
    held = in_redis(cluster, table, range(records))
    assert in_postgres(db, table) == held  # every record as Redis holds it after the failover
    # Redis's own loss, if any: acknowledged by the dead master, never replicated. Only
    # records of its partitions, and never a record Redis still holds as acknowledged.
    lost = {i for i in range(records) if held.get(i) != latest.get(i, i)}
    assert all(table.partition(str(i)) in on_victim for i in lost), sorted(lost)[:10]


@pytest.mark.parametrize(
    "error",
    [
        redis_lib.exceptions.TryAgainError("Multiple keys request during rehashing of slot"),
        redis_lib.exceptions.ClusterError("TTL exhausted."),
        redis_lib.exceptions.ResponseError("Script attempted to access a non local key in a cluster node script"),
    ],
)
def test_a_slot_being_moved_is_a_transient_fault(error):
    assert slot_moving(error) and is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        redis_lib.exceptions.SlotNotCoveredError("no node serves slot 7"),
        redis_lib.exceptions.ClusterDownError("The cluster is down"),
        redis_lib.exceptions.ConnectionError("Error 111 connecting"),
    ],
)
def test_a_failover_under_way_is_a_transient_fault_but_no_slot_move(error):
    assert is_transient(error) and not slot_moving(error)
