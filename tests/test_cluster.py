"""Redis Cluster: every partition lives in one slot, scripts route by key."""

import pytest
from redis.cluster import RedisCluster

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.servers import RedisClusterServers, ServerUnavailable

from .helpers import cli, count, last_json


@pytest.fixture(scope="module")
def cluster():
    try:
        servers = RedisClusterServers(3).start()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    yield servers
    servers.close()


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
