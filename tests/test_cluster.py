"""Redis Cluster: every partition lives in one slot, scripts route by key."""

from redis.cluster import RedisCluster

from syncwd_fast import FastDrainer, Syncwd, Table

from .helpers import cli, count, last_json

# ``cluster``: the session's throwaway 3-master cluster (tests/conftest.py).


def test_write_and_drain_through_a_cluster(cluster, db, dsn, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.p", partitions=16)
    rc = RedisCluster.from_url(cluster.url)
    sw = Syncwd(rc, prefix="c")
    sw.update_many(t, [{"id": i, "v": i} for i in range(5000)])
    sw.delete(t, 3)
    slots = {rc.keyslot(t.keys(p, "c").dirty) for p in range(16)}
    assert len({rc.get_node_from_key(t.keys(p, "c").dirty).name for p in range(16)}) > 1, slots
    report = FastDrainer(rc, dsn, prefix="c", workers=2).drain()
    assert (report.upserted, report.deleted, report.exit_code) == (4999, 1, 0)
    assert count(db, f"{schema}.p") == 4999
    assert sw.get(t, 4999) == {"id": 4999, "v": 4999}

    sw.update(t, {"id": 1, "v": -1})
    out = cli("drain", "--redis", cluster.url, "--cluster", "--dsn", dsn, "--prefix", "c", "--json")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["upserted"] == 1
    assert db.execute(f"SELECT v FROM {schema}.p WHERE id = 1").fetchone() == (-1,)


def test_status_of_thousands_of_partitions_is_a_few_round_trips(cluster, monkeypatch):
    """One pipeline per phase for every table and partition: redis-py's
    cluster pipeline sends each node its commands in one write, so the round
    trips do not grow with partitions (2000 of them) or tables (21)."""
    import time

    import redis.connection

    import syncwd_fast
    from syncwd_fast.keys import REGISTRY_EPOCH, discovered_key, registry_key

    rc = RedisCluster.from_url(cluster.url)
    prefix = "st"
    big = Table("st.big", partitions=2000)
    small = [Table(f"st.small{n}", partitions=5) for n in range(20)]
    sw = Syncwd(rc, prefix=prefix)
    sw.update_many(big, [{"id": i} for i in range(6000)])
    for t in small:
        sw.update(t, {"id": 1})
    # Active runs on every tenth partition of the big table, two ids each left to read.
    pipe = rc.pipeline(transaction=False)
    for p in range(0, 2000, 10):
        keys = big.keys(p, prefix)
        pipe.sadd(keys.run("r1"), "a", "b")
        pipe.hset(keys.meta, mapping={"run": "r1", "cursor": "0", "scan": "whole", "taken": 0, "started_at": 1})
    pipe.execute()
    rc.set(discovered_key(prefix), rc.hget(registry_key(prefix), REGISTRY_EPOCH))  # as a drain leaves it

    sent = []
    real = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sent.append(self.port)
        return real(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    started = time.monotonic()
    got = syncwd_fast.status(rc, prefix=prefix, partitions=True)
    monkeypatch.undo()
    table = got["tables"][big.name]
    assert len(table["per_partition"]) == 2000 and len(got["tables"]) == 21
    assert table["dirty"] == 6000 and table["in_run"] == 400
    assert table["active"]["runs"] == 200 and table["active"]["left"] == 400
    assert all(got["tables"][t.name]["dirty"] == 1 for t in small)
    # Registry reads, one write per node per phase, one settings round trip per primary: a per-partition or
    # per-table read would be thousands, or dozens.
    assert len(sent) <= 16, (len(sent), time.monotonic() - started)

    out = cli("status", "--redis", cluster.url, "--cluster", "--prefix", prefix, "--json", "--partitions")
    assert out.returncode == 0, out.stderr
    printed = last_json(out.stdout)["tables"][big.name]
    assert printed["dirty"] == 6000 and printed["active"]["runs"] == 200 and len(printed["per_partition"]) == 2000
