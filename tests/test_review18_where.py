"""Review of issue 18: "nothing is registered" said "in this Redis Cluster"
of a standalone Redis named by a URL without a database (redis://host:port),
as if cluster detection had taken it for a cluster."""

from __future__ import annotations

from click.testing import CliRunner

from syncwd_fast.cli import main
from syncwd_fast.servers import RedisClusterServers, RedisServer

from .helpers import cli, last_json


def test_a_standalone_redis_without_a_database_in_its_url_is_no_cluster():
    with RedisServer() as plain:
        url = f"redis://127.0.0.1:{plain.port}"
        done = cli("status", "--redis", url, "--prefix", "rv18", "--json")
        assert done.returncode == 0, done.stderr
        (nothing,) = [w for w in last_json(done.stdout)["warnings"] if "nothing is registered" in w]
        assert "Redis database 0" in nothing and "Cluster" not in nothing, nothing
        invoked = CliRunner().invoke(main, ["status", "--redis", url, "--prefix", "rv18", "--no-cluster"])
        assert invoked.exit_code == 0, invoked.output
        assert "in Redis database 0" in invoked.output and "Redis Cluster" not in invoked.output, invoked.output


def test_a_cluster_is_still_called_one():
    with RedisClusterServers(3) as cluster:
        done = cli("status", "--redis", cluster.url, "--prefix", "rv18", "--json")
    assert done.returncode == 0, done.stderr
    (nothing,) = [w for w in last_json(done.stdout)["warnings"] if "nothing is registered" in w]
    assert "this Redis Cluster" in nothing, nothing
