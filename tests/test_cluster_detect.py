"""A Redis Cluster found from the URL of any node: every command that takes
--redis works with no flag, --no-cluster (or SYNCWD_REDIS_CLUSTER=false) on a
cluster node is exit 2 that says so, and the detection is one round trip that
still answers where the ACL denies INFO."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis as redis_lib
from click.testing import CliRunner
from redis.cluster import RedisCluster

import syncwd_fast
from syncwd_fast import ConfigurationError, FastDrainer, Syncwd, Table
from syncwd_fast.cli import main
from syncwd_fast.keys import discovered_key, registry_key
from syncwd_fast.layout import layout_key

from .helpers import cli, last_json

MESSAGE = "this is a Redis Cluster node"


@pytest.fixture
def rc(cluster: Any) -> Iterator[RedisCluster]:
    client = RedisCluster.from_url(cluster.url)
    yield client
    client.close()


def away(cluster: Any, rc: RedisCluster, table: str) -> tuple[str, str]:
    """A prefix of the test's own and the URL of a node that holds none of its
    keys (registry, layout, the table's one partition): a client that took the
    node for a plain server would be sent elsewhere at its first command."""
    while True:
        prefix = "d" + uuid.uuid4().hex[:10]
        keys = [registry_key(prefix), layout_key(prefix), discovered_key(prefix)]
        keys += [Table(table).keys(0, prefix).dirty]
        owners = {rc.get_node_from_key(k).port for k in keys}
        for node in cluster.nodes:
            if node.port not in owners:
                return prefix, node.url


@pytest.fixture
def spot(cluster: Any, rc: RedisCluster, schema: str) -> Iterator[tuple[str, str, str]]:
    """(prefix, node URL, table): see away(); the prefix's keys are removed afterwards."""
    table = f"{schema}.p"
    prefix, url = away(cluster, rc, table)
    yield prefix, url, table
    for key in list(rc.scan_iter(match=f"{prefix}:*")):
        rc.delete(key)


def invoke(*args: str, env: dict[str, str | None] | None = None, input: str | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env={"SYNCWD_REDIS_CLUSTER": None, **(env or {})}, input=input)


def test_every_command_works_with_a_node_url_and_no_flag(spot, rc, db, dsn):
    prefix, url, table = spot
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, score int CHECK (score >= 0))")
    t = Table(table)
    Syncwd(rc, prefix=prefix).update_many(t, [{"id": i, "score": i - 1 if i == 0 else i} for i in range(20)])
    base = ["--redis", url, "--prefix", prefix]

    done = invoke("status", *base, "--json")
    assert done.exit_code == 0, done.output
    assert last_json(done.output)["tables"][table]["dirty"] == 20

    out = cli("drain", *base, "--dsn", dsn, "--json")  # a subprocess, as users run it
    assert out.returncode == 1, out.stderr  # 1: id 0 is dead-lettered (score -1)
    report = last_json(out.stdout)
    assert (report["upserted"], report["dead_lettered"]) == (19, 1)
    assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (19,)

    done = invoke("get", table, "0", *base)
    assert done.exit_code == 0, done.output
    assert "check constraint" in orjson.loads(done.output)["dead_letter"]["error"]

    done = invoke("dead-letter", "list", *base, "--json")
    assert done.exit_code == 0, done.output
    assert [orjson.loads(line)["id"] for line in done.output.splitlines()] == ["0"]
    done = invoke("dead-letter", "retry", *base)
    assert done.exit_code == 0 and "1 dead letter marked dirty again" in done.output, done.output
    # The schedule drains it again: dead once more (its value is still refused).
    done = invoke("schedule", *base, "--dsn", dsn, "--every", "1s", "--max-runs", "1", "--json")
    assert done.exit_code == 1, done.output
    assert last_json(done.output)["dead_lettered"] == 1
    done = invoke("dead-letter", "purge", *base, "--yes")
    assert done.exit_code == 0 and "1 dead letter purged" in done.output, done.output

    done = invoke("tables", "list", *base, "--json")
    assert done.exit_code == 0, done.output
    assert orjson.loads(done.output)["name"] == table
    done = invoke("tables", "show", table, *base, "--json")
    assert done.exit_code == 0 and orjson.loads(done.output)["registered"], done.output
    Syncwd(rc, prefix=prefix).update(t, {"id": 100, "score": 1})
    done = invoke("tables", "repartition", table, "--partitions", "4", *base, "--json")
    assert done.exit_code == 0, done.output
    assert (orjson.loads(done.output)["after"], orjson.loads(done.output)["moved"]) == (4, 1)
    done = invoke("tables", "remove", table, "--force", "--yes", *base, "--json")
    assert done.exit_code == 0, done.output
    assert orjson.loads(done.output)["dirty"] == 1


COMMANDS = [
    ("drain", "--dsn", "{dsn}", "--json"),
    ("schedule", "--dsn", "{dsn}", "--every", "1s", "--max-runs", "1"),
    ("status",),
    ("get", "{table}", "1"),
    ("dead-letter", "list"),
    ("dead-letter", "retry"),
    ("dead-letter", "purge", "--yes"),
    ("tables", "list"),
    ("tables", "show", "{table}"),
    ("tables", "remove", "{table}", "--yes"),
    ("tables", "repartition", "{table}", "--partitions", "2"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_no_cluster_on_a_cluster_node_is_exit_2_that_says_so(spot, dsn, command):
    prefix, url, table = spot
    args = [a.format(dsn=dsn, table=table) for a in command]
    for flag, env in ((["--no-cluster"], {}), ([], {"SYNCWD_REDIS_CLUSTER": "false"})):
        done = invoke(*args, "--redis", url, "--prefix", prefix, *flag, env=env)
        assert done.exit_code == 2, (args, env, done.output)
        assert MESSAGE in done.output and "MOVED" in done.output and "unexpected" not in done.output, done.output
        assert "--cluster" in done.output


def test_no_cluster_as_a_subprocess_reports_exit_2_in_json(spot, dsn):
    prefix, url, _ = spot
    out = cli("drain", "--redis", url, "--prefix", prefix, "--dsn", dsn, "--no-cluster", "--json")
    assert out.returncode == 2, out
    assert MESSAGE in out.stderr and "Traceback" not in out.stderr
    report = last_json(out.stdout)
    assert report["exit_code"] == 2 and report["error"].startswith(MESSAGE)


def test_the_variable_forces_or_leaves_it_to_detection(spot, rc):
    prefix, url, table = spot
    Syncwd(rc, prefix=prefix).update(Table(table), {"id": 1})
    for value in ("true", "1", ""):  # forced, forced, unset: detected
        done = invoke("status", "--redis", url, "--prefix", prefix, "--json", env={"SYNCWD_REDIS_CLUSTER": value})
        assert done.exit_code == 0, (value, done.output)
        assert last_json(done.output)["tables"][table]["dirty"] == 1


def test_a_database_index_on_a_cluster_node_is_a_usage_error(cluster):
    out = cli("status", "--redis", cluster.url.rsplit("/", 1)[0] + "/3")
    assert out.returncode == 2, out
    assert "it is a Redis Cluster node: a cluster has database 0 only" in out.stderr
    with pytest.raises(ConfigurationError, match="database 0 only"):
        syncwd_fast.connect_redis(cluster.url.rsplit("/", 1)[0] + "/?db=2")


def test_connect_redis_picks_the_client(cluster, redis_url, r):
    for node in cluster.nodes:
        client = syncwd_fast.connect_redis(node.url)
        assert isinstance(client, RedisCluster) and len(client.get_primaries()) == 3
        client.close()
    if r.info("server").get("redis_mode") != "cluster":
        plain = syncwd_fast.connect_redis(redis_url)
        assert type(plain) is redis_lib.Redis and plain.ping()
        plain.close()
    forced = syncwd_fast.connect_redis(cluster.url, cluster=False)
    assert type(forced) is redis_lib.Redis
    assert syncwd_fast.detect_cluster(forced) is True
    forced.close()
    decoded = syncwd_fast.connect_redis(cluster.url, decode_responses=True)
    decoded.set("dx:{a}", "é")
    assert decoded.get("dx:{a}") == "é"
    decoded.delete("dx:{a}")
    decoded.close()


def test_a_plain_client_on_a_cluster_node_is_a_configuration_error_in_python(spot, rc, db, dsn):
    prefix, url, table = spot
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    Syncwd(rc, prefix=prefix).update(Table(table), {"id": 1})
    plain = redis_lib.Redis.from_url(url)
    with pytest.raises(ConfigurationError, match=MESSAGE):
        FastDrainer(plain, dsn, prefix=prefix).drain()
    plain.close()


def test_an_ask_reply_says_the_same():
    from syncwd_fast.faults import configuration_problem

    problem = configuration_problem(redis_lib.exceptions.AskError("3999 127.0.0.1:7001"))
    assert problem and problem.startswith(MESSAGE) and "(ASK 3999 127.0.0.1:7001)" in problem


def test_detection_is_one_round_trip_on_a_plain_server(private_redis):
    admin = redis_lib.Redis(port=private_redis.port)
    admin.config_resetstat()
    client = syncwd_fast.connect_redis(private_redis.url)
    assert type(client) is redis_lib.Redis
    client.ping()  # the probe's connection serves the client: no second one is opened
    stats = admin.info("commandstats")
    assert stats["cmdstat_info"]["calls"] == 1
    assert not [name for name in stats if "cluster" in name or "readonly" in name]
    assert admin.info("stats")["total_connections_received"] == 1  # the client's (admin's came before the reset)
    client.close()
    out = cli("status", "--redis", f"redis://u:wrong@127.0.0.1:{private_redis.port}/0")  # no detection needed to say it
    assert out.returncode == 2 and "invalid username-password pair" in out.stderr, out
    admin.close()


@pytest.fixture
def acl(cluster: Any) -> Iterator[Any]:
    """``acl(rules)``: a user on every node of the cluster with these rules on
    top of +@all ~*; its URL. Deleted afterwards."""
    made: list[str] = []
    nodes = [redis_lib.Redis(port=n.port) for n in cluster.nodes]

    def make(*rules: str) -> str:
        name = "u" + uuid.uuid4().hex[:8]
        for node in nodes:
            node.acl_setuser(name, enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", *rules])
        made.append(name)
        return f"redis://{name}:pw@127.0.0.1:{cluster.nodes[0].port}/0"

    yield make
    for node in nodes:
        for name in made:
            node.acl_deluser(name)
        node.close()


def test_detection_where_the_acl_denies_info(acl, spot, rc, caplog):
    prefix, _, table = spot
    Syncwd(rc, prefix=prefix).update(Table(table), {"id": 1})
    for rules in (["-info"], ["-info", "-cluster|info"]):  # CLUSTER INFO answers, else READONLY
        url = acl(*rules)
        client = syncwd_fast.connect_redis(url)
        assert isinstance(client, RedisCluster), rules
        client.close()
        done = invoke("status", "--redis", url, "--prefix", prefix, "--json")
        assert done.exit_code == 0, (rules, done.output)
        assert last_json(done.output)["tables"][table]["dirty"] == 1
    # Every probe denied: taken as a plain server, said in a warning; then the first MOVED says what to do.
    url = acl("-info", "-cluster|info", "-readonly")
    with caplog.at_level("WARNING", logger="syncwd_fast"):
        client = syncwd_fast.connect_redis(url)
    assert type(client) is redis_lib.Redis
    assert "cannot tell whether Redis is a Redis Cluster node" in caplog.text and "--cluster" in caplog.text
    client.close()
    done = invoke("tables", "list", "--redis", url, "--prefix", prefix)
    assert done.exit_code == 2 and MESSAGE in done.output, done.output
    done = invoke("tables", "list", "--redis", url, "--prefix", prefix, "--cluster", "--json")
    assert done.exit_code == 0 and orjson.loads(done.output)["name"] == table, done.output


def test_a_plain_server_where_every_probe_is_denied(private_redis, caplog):
    admin = redis_lib.Redis(port=private_redis.port)
    admin.acl_setuser("u", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-info", "-cluster"])
    url = f"redis://u:pw@127.0.0.1:{private_redis.port}/0"
    assert syncwd_fast.detect_cluster(redis_lib.Redis.from_url(url)) is False  # READONLY: "cluster support disabled"
    admin.acl_setuser("u", enabled=True, commands=["-readonly"])
    with caplog.at_level("WARNING", logger="syncwd_fast"):
        client = syncwd_fast.connect_redis(url)
    assert type(client) is redis_lib.Redis and client.set("k", "v")
    assert "taken as a plain server" in caplog.text
    client.close()
    out = cli("status", "--redis", f"redis://u:wrong@127.0.0.1:{private_redis.port}/0")  # no detection needed to say it
    assert out.returncode == 2 and "invalid username-password pair" in out.stderr, out
    admin.close()


def test_the_demo_finds_the_cluster_too(cluster, rc, base_dsn, db):
    namespace = "zdemo_" + uuid.uuid4().hex[:8]
    try:
        out = cli(
            "demo", "--redis", cluster.nodes[-1].url, "--dsn", base_dsn, "--records", "300", "--updates", "1000",
            "--namespace", namespace,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "checked: all 300 rows hold their latest value" in out.stdout
    finally:
        db.execute(f"DROP SCHEMA IF EXISTS {namespace} CASCADE")
        for key in list(rc.scan_iter(match=f"{namespace}:*")):
            rc.delete(key)


def test_a_redis_that_does_not_answer_is_taken_as_a_plain_server_and_said_so(caplog):
    from syncwd_fast.servers import free_port

    with caplog.at_level("WARNING", logger="syncwd_fast"):
        client = syncwd_fast.connect_redis(f"redis://127.0.0.1:{free_port()}/0")
    assert type(client) is redis_lib.Redis  # the drain's own retries then say what is wrong, as before
    assert "cannot reach Redis to tell whether it is a Redis Cluster node" in caplog.text
    client.close()
