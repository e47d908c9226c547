"""The registry hash P:tables lost (evicted, a failover before it replicated):
writers put it back, drain, status and dead-letter find the tables from their
partitions' meta, and nothing stays stranded."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis as redis_lib
from redis.cluster import RedisCluster

from syncwd_fast import ConfigurationError, FastDrainer, Syncwd, Table, writer
from syncwd_fast.discover import discover_tables, restore_registry
from syncwd_fast.keys import registry_key
from syncwd_fast.servers import RedisClusterServers

from . import cluster_ops
from .helpers import cli, count, last_json, wait_for


@pytest.fixture
def warnings_(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The package's warnings, whether or not an in-process CLI run stopped
    its logger from propagating."""
    logger = logging.getLogger("syncwd_fast")
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.WARNING)
    yield caplog
    logger.removeHandler(caplog.handler)


def status_json(redis_url: str, prefix: str, *extra: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = cli("status", "--redis", redis_url, "--prefix", prefix, "--json", *extra, env=env)
    assert out.returncode == 0, out.stderr
    return last_json(out.stdout)["tables"]


def test_a_writer_restores_its_lost_entry_once_per_interval(r, prefix, monkeypatch):
    t = Table("reg_p", partitions=4, ttl=60)
    registry = registry_key(prefix)
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i} for i in range(100)])
    assert r.hget(t.keys(0, prefix).meta, "table") == t.to_registry()  # every partition carries the entry

    r.delete(registry)
    sw.update(t, {"id": 1})
    assert r.hget(registry, t.name) is None  # within the interval: no registry command per write

    monkeypatch.setattr(writer, "REASSERT_SECONDS", 0.0)
    sw.update(t, {"id": 2})  # one Lua call: the HSETNX rides in its pipeline
    assert r.hget(registry, t.name) == t.to_registry()

    r.delete(registry)
    sw.update_many(t, [{"id": i} for i in range(10)])  # several calls, pipelined
    assert r.hget(registry, t.name) == t.to_registry()

    other = Table("reg_p", partitions=4, ttl=7).to_registry()
    r.hset(registry, t.name, other)
    sw.delete(t, 3)
    assert r.hget(registry, t.name) == other  # never replaces another writer's entry


@pytest.mark.parametrize("via", ["api", "cli"])
def test_registry_lost_between_writes_every_record_still_lands(r, db, redis_url, dsn, prefix, schema, via, warnings_):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.p", partitions=4)
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "v": i} for i in range(300)])
    r.delete(registry_key(prefix))  # evicted, or lost in a failover
    sw.update_many(t, [{"id": i, "v": -i} for i in range(200, 400)])  # the writer goes on, as before
    sw.delete(t, 7)
    assert not r.exists(registry_key(prefix))

    status = status_json(redis_url, prefix)[t.name]
    assert (status["registered"], status["dirty"], status["partitions"]) == (False, 400, 4)
    out = cli("status", "--redis", redis_url, "--prefix", prefix)
    assert "400 dirty" in out.stdout and "unregistered" in out.stdout, out

    if via == "api":
        report = FastDrainer(r, dsn, prefix=prefix, batch=64).drain()
        assert (report.upserted, report.deleted, report.exit_code) == (399, 1, 0)
        assert "registered again from partition meta" in warnings_.text
    else:
        out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--batch", "64", "--json")
        assert out.returncode == 0, out.stderr
        report_json = last_json(out.stdout)
        assert (report_json["upserted"], report_json["deleted"], report_json["exit_code"]) == (399, 1, 0)
        assert "registered again from partition meta" in out.stderr and t.name in out.stderr
    assert count(db, t.name) == 399
    assert db.execute(f"SELECT v FROM {t.name} WHERE id = 250").fetchone() == (-250,)
    assert r.hget(registry_key(prefix), t.name) == t.to_registry()
    after = status_json(redis_url, prefix)[t.name]
    assert (after["registered"], after["dirty"]) == (True, 0)


def test_discover_drains_a_table_the_registry_lacks(r, db, redis_url, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY)")
    db.execute(f"CREATE TABLE {schema}.b (id int PRIMARY KEY)")
    a, b = Table(f"{schema}.a", partitions=2), Table(f"{schema}.b", partitions=3)
    sw = Syncwd(r, prefix=prefix)
    base = ["drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--json"]
    sw.register(a)
    sw.register(b)
    assert cli(*base).returncode == 0  # a first look under this registry's epoch: later drains need no SCAN
    sw.update_many(a, [{"id": i} for i in range(50)])
    sw.update_many(b, [{"id": i} for i in range(70)])
    r.hdel(registry_key(prefix), b.name)  # one entry lost, the registry (and its epoch) still there

    out = cli(*base)  # no SCAN unless asked
    assert out.returncode == 0 and list(last_json(out.stdout)["tables"]) == [a.name], out.stderr
    assert b.name not in status_json(redis_url, prefix)
    lost = status_json(redis_url, prefix, env={"SYNCWD_DISCOVER": "1"})[b.name]
    assert (lost["registered"], lost["dirty"]) == (False, 70)

    out = cli(*base, "--discover")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["tables"][b.name]["upserted"] == 70
    assert count(db, b.name) == 70
    assert r.hget(registry_key(prefix), b.name) == b.to_registry()

    sw.update(b, {"id": 1000})
    r.hdel(registry_key(prefix), b.name)
    schedule = ["schedule", *base[1:], "--every", "1s", "--max-runs", "1"]
    out = cli(*schedule, env={"SYNCWD_DISCOVER": "true"})
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["tables"][b.name]["upserted"] == 1
    assert count(db, b.name) == 71


def test_a_named_table_the_registry_lacks_is_found(r, db, redis_url, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY)")
    db.execute(f"CREATE TABLE {schema}.b (id int PRIMARY KEY)")
    a, b = Table(f"{schema}.a"), Table(f"{schema}.b", partitions=2)
    sw = Syncwd(r, prefix=prefix)
    sw.update(a, {"id": 1})
    sw.update_many(b, [{"id": i} for i in range(20)])
    r.hdel(registry_key(prefix), b.name)

    assert status_json(redis_url, prefix, "--table", b.name)[b.name]["registered"] is False
    report = FastDrainer(r, dsn, tables=[b.name], prefix=prefix).drain()
    assert (report.upserted, report.exit_code, list(report.tables)) == (20, 0, [b.name])
    assert count(db, b.name) == 20 and count(db, a.name) == 0


def test_discovery_skips_invalid_and_hostile_meta(r, prefix, warnings_):
    def meta(tag: str, **fields: Any) -> None:
        r.hset(f"{prefix}:{{{tag}}}:meta", mapping=fields)

    good, idle = Table("good", partitions=2), Table("s.idle")
    meta("good:1", table=good.to_registry(), last_run="r1")
    r.sadd(f"{prefix}:{{good:1}}:dirty", "5")
    meta("s.idle:0", table=idle.to_registry())  # nothing waiting
    meta("evil;drop:0", table=good.to_registry())  # not an identifier
    meta("bad:0", table=b"{not json")
    meta("badkey:0", table=orjson.dumps({"partitions": 1, "key": ["x y"]}))
    meta("wide:5", table=Table("wide", partitions=2).to_registry())  # partition 5 of 2: nobody wrote it
    meta("old:0", last_run="r0")  # written before meta carried the entry
    r.set(f"{prefix}:{{str:0}}:meta", "a string")  # matches the pattern, is no hash
    r.set(f"{prefix}:{{good:0}}:v:x}}:meta", "{}")  # a value key whose id ends like a meta key
    # a table redefined from 4 to 2 partitions after a full drain: the live partitions' entry wins
    re2, re4 = Table("re", partitions=2), Table("re", partitions=4)
    meta("re:0", table=re2.to_registry(), run="r9")
    meta("re:3", table=re4.to_registry())

    assert discover_tables(r, prefix) == {"good": good, "re": re2, "s.idle": idle}
    assert discover_tables(r, prefix, pending_only=True) == {"good": good, "re": re2}
    for name in ("evil;drop", "{bad:0}", "{badkey:0}", "{wide:5}", "{str:0}"):
        assert name in warnings_.text
    assert "good:0}:v" not in warnings_.text and "{old:0}" not in warnings_.text

    r.hset(registry_key(prefix), "good", b"someone else's")
    assert restore_registry(r, prefix, {"good": good, "re": re2}) == ["re"]
    assert r.hget(registry_key(prefix), "good") == b"someone else's"


def test_dead_letters_are_found_without_the_registry(r, db, redis_url, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int CHECK (v >= 0))")
    t = Table(f"{schema}.p", partitions=2)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": 1, "v": 1}, {"id": 2, "v": -1}])
    assert FastDrainer(r, dsn, prefix=prefix).drain().dead_lettered == 1
    r.delete(registry_key(prefix))

    out = cli("dead-letter", "list", "--redis", redis_url, "--prefix", prefix, "--json")
    assert out.returncode == 0, out.stderr
    entry = last_json(out.stdout)
    assert (entry["table"], entry["id"]) == (t.name, "2")
    assert status_json(redis_url, prefix)[t.name]["dead"] == 1
    out = cli("dead-letter", "purge", "--redis", redis_url, "--prefix", prefix, "--yes")
    assert out.returncode == 0 and "1 dead letter purged" in out.stdout, out


# --- Redis Cluster: the registry's master fails over before P:tables replicated --------------


@pytest.fixture
def cluster() -> Iterator[RedisClusterServers]:
    yield from cluster_ops.own_cluster(replicas=1)


def node(address: str) -> redis_lib.Redis:
    host, port = address.rsplit(":", 1)
    return redis_lib.Redis(host=host, port=int(port), decode_responses=True)


def test_cluster_failover_before_the_registry_replicated(cluster, db, dsn, schema):
    rc = RedisCluster.from_url(cluster.url)

    def master_of(key: str) -> str:
        return str(rc.get_node_from_key(key).name)

    # A table on two of the three masters and a prefix whose registry lives on the third: that
    # master's unreplicated writes are then P:tables alone, and losing them loses no record.
    # (Partitions hash by their tag {T:n}, the registry by the prefix.)
    def homes(table: Table) -> set[str]:
        return {master_of(table.keys(n, "c").dirty) for n in range(table.partitions)}

    t = next(x for x in (Table(f"{schema}.p{i}", partitions=3) for i in range(1000)) if len(homes(x)) == 2)
    prefix = next(p for p in (f"c{i}" for i in range(1000)) if master_of(registry_key(p)) not in homes(t))
    registry = registry_key(prefix)
    db.execute(f"CREATE TABLE {t.name} (id int PRIMARY KEY, v int)")
    master = node(master_of(registry))
    replica_address = next(iter(master.execute_command("CLUSTER REPLICAS", master.execute_command("CLUSTER MYID"))))
    replica = node(replica_address)

    # Replication stops: the replica can no longer log in to its master.
    replica.config_set("masterauth", "not-the-password")
    replica.client_kill_filter(_type="master")
    assert wait_for(lambda: replica.info("replication")["master_link_status"] == "down", 10)

    sw = Syncwd(rc, prefix=prefix)
    sw.update_many(t, [{"id": i, "v": i} for i in range(3000)])
    sw.delete(t, 3)
    assert master.dbsize() == 1 and master.exists(registry) and replica.dbsize() == 0

    replica.execute_command("CLUSTER FAILOVER", "TAKEOVER")

    def promoted() -> bool:
        views = [node(f"127.0.0.1:{n.port}").execute_command("CLUSTER NODES") for n in cluster.nodes]
        return all("master" in view[replica_address]["flags"] for view in views)

    assert wait_for(promoted, 15, 0.05), "the cluster did not see the replica take over"
    assert wait_for(lambda: master.info("replication")["role"] == "slave", 15, 0.05)

    drainer_client = RedisCluster.from_url(cluster.url)
    assert drainer_client.get_node_from_key(registry).name == replica_address
    assert not drainer_client.exists(registry)  # the new master never had it

    out = cli("status", "--redis", cluster.url, "--cluster", "--prefix", prefix, "--json")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["tables"][t.name]["dirty"] == 3000

    report = FastDrainer(drainer_client, dsn, prefix=prefix, workers=2).drain()
    assert (report.upserted, report.deleted, report.exit_code) == (2999, 1, 0)
    assert count(db, t.name) == 2999
    assert db.execute(f"SELECT sum(v) FROM {t.name}").fetchone() == (sum(range(3000)) - 3,)
    assert drainer_client.hget(registry, t.name) == t.to_registry()
    rc.close()
    drainer_client.close()


def test_a_writer_with_other_options_is_refused_unless_it_replaces_the_entry(r, prefix):
    """Two programs writing one table with different options: the second is
    refused, naming both, so that it cannot switch the first's version guard
    off behind its back; replace=True replaces the entry on purpose."""
    guarded = Table("reg_g", partitions=2, version_column="ver")
    Syncwd(r, prefix=prefix).update(guarded, {"id": 1, "ver": 1})
    other = Syncwd(r, prefix=prefix)
    plain = Table("reg_g", partitions=2)
    with pytest.raises(
        ConfigurationError, match=r"registered as .*version_column=ver.*this writer has it as .*version_column=None"
    ):
        other.update(plain, {"id": 2})
    assert Table.from_registry("reg_g", r.hget(registry_key(prefix), "reg_g")) == guarded
    assert not r.exists(plain.keys(plain.partition("2"), prefix).value("2"))  # nothing written
    other.register(plain, replace=True)
    other.update(plain, {"id": 2})
    assert Table.from_registry("reg_g", r.hget(registry_key(prefix), "reg_g")) == plain
    with pytest.raises(ConfigurationError, match="partition count"):
        other.register(Table("reg_g", partitions=3), replace=True)
