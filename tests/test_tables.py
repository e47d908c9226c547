"""`syncwd-fast tables list|show|remove|repartition` and their functions."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from syncwd_fast import (
    ConfigurationError,
    FastDrainer,
    Syncwd,
    Table,
    list_tables,
    purge_dead_letters,
    remove_table,
    repartition_table,
    scripts,
    show_table,
)
from syncwd_fast.admin import status
from syncwd_fast.cli import main
from syncwd_fast.connection import primaries
from syncwd_fast.keys import registry_key

from . import cluster_ops
from .helpers import cli, last_json, rows


def keys_of(r: Any, prefix: str, table: str) -> list[bytes]:
    return sorted(r.scan_iter(match=f"{prefix}:{{{table}:*", count=1000))


def drain(r: Any, dsn: str, prefix: str, **kw: Any) -> Any:
    with FastDrainer(r, dsn, prefix=prefix, **kw) as drainer:
        return drainer.drain()


def test_a_typod_table_fails_every_drain_until_removed(r, db, dsn, redis_url, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.progress (id int PRIMARY KEY, v int)")
    good, typo = Table(f"{schema}.progress", partitions=2), Table(f"{schema}.progres", partitions=3)
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(good, [{"id": i, "v": i} for i in range(50)])
    sw.update_many(typo, [{"id": i, "v": i} for i in range(30)])
    base = ["--redis", redis_url, "--prefix", prefix]
    for _ in range(2):
        out = cli("drain", *base, "--dsn", dsn, "--json")
        assert out.returncode == 1, out.stderr
        assert last_json(out.stdout)["tables"][typo.name]["error"]

    out = cli("tables", "remove", typo.name, *base, "--yes")
    assert out.returncode == 2 and "30 dirty" in out.stderr and "--force" in out.stderr, out
    assert r.hexists(registry_key(prefix), typo.name) and len(keys_of(r, prefix, typo.name)) > 0

    out = cli("tables", "remove", typo.name, *base, "--yes", "--force", "--json")
    assert out.returncode == 0, out.stderr
    removed = last_json(out.stdout)
    assert (removed["dirty"], removed["in_run"], removed["inflight"], removed["dead"]) == (30, 0, 0, 0)
    assert removed["values"] == 30 and removed["forced"] and removed["registered"]
    assert keys_of(r, prefix, typo.name) == []
    assert not r.hexists(registry_key(prefix), typo.name)

    for extra in ([], ["--discover"]):
        out = cli("drain", *base, "--dsn", dsn, "--json", *extra)
        assert out.returncode == 0, out.stderr
        assert typo.name not in last_json(out.stdout)["tables"]
    assert not r.hexists(registry_key(prefix), typo.name)
    assert len(rows(db, good.name)) == 50
    assert [t["name"] for t in list_tables(r, prefix=prefix, discover=True)] == [good.name]


def test_the_registry_entry_hidden_by_hdel_is_found_and_removed(r, prefix):
    t = Table("hidden", partitions=2)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i} for i in range(10)])
    r.hdel(registry_key(prefix), t.name)  # what an operator did before this command
    assert [(x["name"], x["registered"]) for x in list_tables(r, prefix=prefix)] == [("hidden", False)]
    removed = remove_table(r, t.name, prefix=prefix, force=True)
    assert (removed.registered, removed.dirty) == (False, 10)
    assert keys_of(r, prefix, t.name) == []
    with pytest.raises(ConfigurationError, match="no table 'hidden'"):
        remove_table(r, t.name, prefix=prefix)


def run_left_by_a_killed_drain(r: Any, t: Table, prefix: str) -> None:
    """Partition 0 of ``t``: a run snapshotted, one pop in flight, then the
    drainer gone (its lease released, as when its lease ran out)."""
    keys = t.keys(0, prefix)
    scripts.lease(r, keys, "acquire", "dead-drainer", 60_000)
    scripts.snapshot(r, keys, "dead-drainer", "R1")
    scripts.pop(r, keys, "R1", "dead-drainer", 5, 60_000)
    scripts.lease(r, keys, "release", "dead-drainer")


def test_remove_is_refused_while_records_wait_and_force_drops_exactly_them(r, dsn, db, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.w (id int PRIMARY KEY, v int CHECK (v >= 0))")
    t = Table(f"{schema}.w", partitions=1)
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "v": i} for i in range(10)])  # landed: cached values with a TTL
    sw.update(t, {"id": 99, "v": -1})  # a dead letter
    assert drain(r, dsn, prefix).dead_lettered == 1
    sw.update_many(t, [{"id": i, "v": i} for i in range(100, 120)])  # the run, popped in part
    run_left_by_a_killed_drain(r, t, prefix)
    sw.update_many(t, [{"id": i, "v": i} for i in range(200, 207)])  # dirty
    waiting = status(r, prefix=prefix)["tables"][t.name]
    counts = (waiting["dirty"], waiting["in_run"], waiting["inflight"], waiting["dead"])
    assert (counts[0], counts[1] + counts[2], counts[3]) == (7, 20, 1) and counts[2] > 0

    before = keys_of(r, prefix, t.name)
    with pytest.raises(ConfigurationError) as refused:
        remove_table(r, t.name, prefix=prefix)
    message = str(refused.value)
    said_counts = (f"{counts[1]} in a run", f"{counts[2]} in flight")
    for said in ("7 dirty", *said_counts, "1 dead", "a run under way or left", "dead-letter", "--force"):
        assert said in message
    assert keys_of(r, prefix, t.name) == before  # nothing changed, the lease released again
    assert not r.exists(t.keys(0, prefix).lease)

    removed = remove_table(r, t.name, prefix=prefix, force=True)
    assert (removed.dirty, removed.in_run, removed.inflight, removed.dead) == counts
    assert removed.values == 7 + 20 + 1  # the values without a TTL: the dropped records'
    left = keys_of(r, prefix, t.name)
    assert sorted(k.decode().rsplit(":", 1)[1] for k in left) == [str(i) for i in range(10)]  # the cache stays
    assert all(r.ttl(k) > 0 for k in left)
    assert remove_table(r, t.name, prefix=prefix, values=True).values == 10  # found by its keys alone
    assert keys_of(r, prefix, t.name) == []


def test_remove_is_refused_while_a_drain_holds_a_lease(r, prefix):
    t = Table("held", partitions=3)
    Syncwd(r, prefix=prefix).update(t, {"id": 1})
    scripts.lease(r, t.keys(2, prefix), "acquire", "live", 60_000, "host pid 1 since now")
    before = keys_of(r, prefix, t.name)
    with pytest.raises(ConfigurationError, match=r"partition 2 of held is held by host pid 1 .*nothing was changed"):
        remove_table(r, t.name, prefix=prefix, force=True)
    assert keys_of(r, prefix, t.name) == before
    assert r.get(t.keys(2, prefix).lease) == b"live"
    assert not r.exists(t.keys(0, prefix).lease) and not r.exists(t.keys(1, prefix).lease)


def test_a_writer_that_keeps_writing_loses_nothing_and_brings_the_table_back(r, prefix):
    t = Table("busy", partitions=4)
    written: list[int] = []
    stop = threading.Event()

    def write() -> None:
        sw = Syncwd(r, prefix=prefix)
        i = 0
        while not stop.is_set() or i < 200:
            sw.update(t, {"id": i})
            written.append(i)
            i += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while len(written) < 200:
            threading.Event().wait(0.01)
        removed = remove_table(r, t.name, prefix=prefix, force=True)
        after = len(written)
        while len(written) < after + 50:  # written after the removal
            threading.Event().wait(0.01)
    finally:
        stop.set()
        writer.join()
    kept = {int(i) for n in range(4) for i in r.smembers(t.keys(n, prefix).dirty)}
    # every id written once: dropped (counted) or still waiting with its value
    assert removed.dirty + len(kept) == len(written)
    assert all(r.exists(t.keys(t.partition(str(i)), prefix).value(str(i))) for i in kept)
    assert kept and max(kept) == written[-1]
    assert [x["name"] for x in list_tables(r, prefix=prefix, discover=True)] == ["busy"]  # back


def test_cli_list_show_and_a_declined_remove(r, redis_url, prefix):
    t = Table("clit", partitions=2, ttl=60, version_column="ver")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "ver": 1} for i in range(5)])
    base = ["--redis", redis_url, "--prefix", prefix]
    runner = CliRunner()
    done = runner.invoke(main, ["tables", "list", *base, "--json"])
    assert done.exit_code == 0, done.output
    listed = orjson.loads(done.output.splitlines()[0])
    assert listed == {
        "name": "clit",
        "partitions": 2,
        "key": ["id"],
        "ttl": 60,
        "version_column": "ver",
        "registered": True,
        "backlog": {"dirty": 5, "in_run": 0, "inflight": 0, "dead": 0},
    }
    done = runner.invoke(main, ["tables", "show", "clit", *base], env={"SYNCWD_JSON": "1"})
    shown = orjson.loads(done.output)
    assert [p["dirty"] for p in shown["partitions"]] == [
        r.scard(t.keys(0, prefix).dirty),
        r.scard(t.keys(1, prefix).dirty),
    ]
    assert shown["entry"] == {"partitions": 2, "key": ["id"], "ttl": 60, "version_column": "ver"}
    assert show_table(r, "clit", prefix=prefix) == shown

    before = keys_of(r, prefix, t.name)
    done = runner.invoke(main, ["tables", "remove", "clit", *base, "--force"], input="n\n")
    assert done.exit_code == 0 and "Nothing removed" in done.output
    assert keys_of(r, prefix, t.name) == before
    done = runner.invoke(main, ["tables", "remove", "clit", *base], env={"SYNCWD_FORCE": "1", "SYNCWD_YES": "1"})
    assert done.exit_code == 0 and "dropped 5 dirty" in done.output, done.output
    done = runner.invoke(main, ["tables", "show", "clit", *base])
    assert done.exit_code == 2 and "no table 'clit'" in done.output


# --- repartition ------------------------------------------------------------------


@pytest.mark.parametrize("before,after", [(2, 5), (6, 3)])
def test_repartition_while_a_writer_runs_loses_nothing(r, db, dsn, prefix, schema, before, after):
    """A writer keeps writing with the old count, is refused once the table is
    repartitioned, and goes on with the new count (as a restarted writer
    would); a drain before and one after: every row ends with the last
    value written."""
    db.execute(f"CREATE TABLE {schema}.rp (id int PRIMARY KEY, v int)")
    old, new = Table(f"{schema}.rp", partitions=before, ttl=600), Table(f"{schema}.rp", partitions=after, ttl=600)
    last: dict[int, int] = {}
    refused: list[str] = []
    stop = threading.Event()

    def write() -> None:
        sw, table, v = Syncwd(r, prefix=prefix), old, 0
        while not stop.is_set():
            v += 1
            batch = [{"id": i, "v": v} for i in range((v * 37) % 300, (v * 37) % 300 + 40)]
            try:
                sw.update_many(table, batch)
            except ConfigurationError as exc:
                refused.append(str(exc))
                sw, table = Syncwd(r, prefix=prefix), new  # restarted with the new count
                for _ in range(100):  # refused until the registry has the new count (a few ms)
                    try:
                        sw.update_many(table, batch)  # the refused call again
                        break
                    except ConfigurationError as again:
                        assert "tables repartition" in str(again)
                        threading.Event().wait(0.02)
            last.update((row["id"], row["v"]) for row in batch)
            if table is new and len(refused) and v % 50 == 0:
                return

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while len(last) < 150:
            threading.Event().wait(0.01)
        assert drain(r, dsn, prefix).exit_code == 0
        done = repartition_table(r, old.name, after, prefix=prefix)
        writer.join(timeout=60)
    finally:
        stop.set()
        writer.join()
    assert (done.before, done.after, done.missing) == (before, after, 0)
    assert refused and f"has {after} partitions now" in refused[0]
    assert r.hget(registry_key(prefix), old.name) == new.to_registry()
    for n in range(max(before, after)):  # each waiting id in its new partition
        assert all(new.partition(i.decode()) == n for i in r.smembers(new.keys(n, prefix).dirty)), n
    report = drain(r, dsn, prefix)
    assert report.exit_code == 0 and report.tables[new.name].partitions == after
    assert dict(db.execute(f"SELECT id, v FROM {new.name}").fetchall()) == last
    assert Syncwd(r, prefix=prefix).get(new, 7) in ({"id": 7, "v": last[7]}, None)
    assert repartition_table(r, old.name, after, prefix=prefix).moved == 0  # again: nothing to move


def test_repartition_refuses_runs_and_dead_letters_and_old_writers(r, redis_url, dsn, db, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.rq (id int PRIMARY KEY, v int CHECK (v >= 0))")
    t = Table(f"{schema}.rq", partitions=2)
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": 1, "v": -1}, {"id": 2, "v": 2}])
    assert drain(r, dsn, prefix).dead_lettered == 1
    base = ["--redis", redis_url, "--prefix", prefix]
    out = cli("tables", "repartition", t.name, "--partitions", "4", *base)
    assert out.returncode == 2 and "1 dead" in out.stderr and "nothing was changed" in out.stderr, out
    assert r.hget(registry_key(prefix), t.name) == t.to_registry()
    assert purge_dead_letters(r, prefix=prefix) == 1
    sw.update_many(t, [{"id": i, "v": i} for i in range(10, 20)])
    run_left_by_a_killed_drain(r, t, prefix)
    with pytest.raises(ConfigurationError, match="in a run"):
        repartition_table(r, t.name, 4, prefix=prefix)
    assert drain(r, dsn, prefix).exit_code == 0

    sw.update_many(t, [{"id": i, "v": i} for i in range(30, 60)])
    out = cli("tables", "repartition", t.name, *base, "--json", env={"SYNCWD_PARTITION_COUNT": "4"})
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["after"] == 4
    with pytest.raises(ConfigurationError, match="has 4 partitions now"):
        sw.update(t, {"id": 31, "v": 0})
    with pytest.raises(ConfigurationError, match="tables repartition"):
        Syncwd(r, prefix=prefix).update(t, {"id": 31, "v": 0})
    assert drain(r, dsn, prefix).exit_code == 0
    assert len(rows(db, t.name)) == 1 + 10 + 30


# --- Redis Cluster: every partition in a slot of its own, on several nodes ---------


@pytest.fixture(scope="module")
def cluster():
    yield from cluster_ops.own_cluster()


def test_remove_and_repartition_through_a_cluster(cluster, db, dsn, schema):
    from redis.cluster import RedisCluster

    db.execute(f"CREATE TABLE {schema}.c (id int PRIMARY KEY, v int)")
    rc = RedisCluster.from_url(cluster.url)
    good, typo = Table(f"{schema}.c", partitions=4, ttl=600), Table(f"{schema}.cc", partitions=8)
    sw = Syncwd(rc, prefix="ct")
    sw.update_many(good, [{"id": i, "v": i} for i in range(400)])
    sw.update_many(typo, [{"id": i, "v": i} for i in range(300)])
    assert len({rc.get_node_from_key(typo.keys(n, "ct").dirty).name for n in range(8)}) > 1
    base = ["--redis", cluster.url, "--cluster", "--prefix", "ct"]

    out = cli("tables", "remove", typo.name, *base, "--yes", "--force", "--json")
    assert out.returncode == 0, out.stderr
    assert (last_json(out.stdout)["dirty"], last_json(out.stdout)["values"]) == (300, 300)
    assert not any(client.keys(f"ct:{{{typo.name}:*") for _, client in primaries(rc))

    assert drain(rc, dsn, "ct").exit_code == 0  # landed: cached values with a TTL
    sw.update_many(good, [{"id": i, "v": -i} for i in range(0, 400, 3)])  # waiting
    done = repartition_table(rc, good.name, 11, prefix="ct")
    assert done.moved > 0 and done.cached > 0
    new = Table(good.name, partitions=11, ttl=600)
    assert Syncwd(rc, prefix="ct").get(new, 3) == {"id": 3, "v": -3}
    assert Syncwd(rc, prefix="ct").get(new, 4) == {"id": 4, "v": 4}  # a cached value, moved with its TTL
    out = cli("drain", *base, "--dsn", dsn, "--discover", "--json")
    assert out.returncode == 0 and set(last_json(out.stdout)["tables"]) == {good.name}, out.stderr
    assert dict(db.execute(f"SELECT id, v FROM {good.name}").fetchall()) == {
        i: -i if i % 3 == 0 else i for i in range(400)
    }
