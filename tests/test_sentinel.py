"""Redis Sentinel: the commands reach the master through --sentinel/--service
(or a redis+sentinel:// URL), and a drain survives a failover in its middle
with nothing lost."""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis
from click.testing import CliRunner
from redis.sentinel import Sentinel

from syncwd_fast import FastDrainer, Syncwd, Table, status
from syncwd_fast.cli import main
from syncwd_fast.errors import ConfigurationError
from syncwd_fast.sentinel import parse_sentinels, redis_from_sentinel, split_sentinel_url
from syncwd_fast.servers import RedisSentinelServers, ServerUnavailable

from .helpers import cli, count, drain_command, last_json, wait_for

PREFIX = "sn"


def _start(**kwargs: Any) -> Iterator[RedisSentinelServers]:
    try:
        servers = RedisSentinelServers(**kwargs).start()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    yield servers
    servers.close()


@pytest.fixture(scope="module")
def sentinels() -> Iterator[RedisSentinelServers]:
    """Servers no test here fails over: shared by the module."""
    yield from _start()


@pytest.fixture
def own_sentinels() -> Iterator[RedisSentinelServers]:
    """Servers of the test's own, to fail over."""
    yield from _start()


def master_client(servers: RedisSentinelServers) -> Any:
    return redis_from_sentinel(servers.addresses, servers.service)


def test_sentinel_addresses_and_urls_parse() -> None:
    assert parse_sentinels("a:1, b:2,[::1]:3,c") == [("a", 1), ("b", 2), ("::1", 3), ("c", 26379)]
    for bad in ("", "a:x", "a:0", ":5"):
        with pytest.raises(ConfigurationError, match="--sentinel takes host:port"):
            parse_sentinels(bad)
    found, service, master = split_sentinel_url("rediss+sentinel://u:p%40w@h1:1,h2/my%20svc/3?ssl_cert_reqs=none")
    assert (found, service) == ([("h1", 1), ("h2", 26379)], "my svc")
    assert master == "rediss://u:p%40w@sentinel/3?ssl_cert_reqs=none"
    assert split_sentinel_url("redis+sentinel://h:1/svc")[2] == "redis://sentinel/0"
    with pytest.raises(ConfigurationError, match="without a service"):
        split_sentinel_url("redis+sentinel://h:1/")


def test_cli_drain_and_status_through_sentinel(sentinels: RedisSentinelServers, db: Any, dsn: str, schema: str) -> None:
    db.execute(f"CREATE TABLE {schema}.s (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.s", partitions=4)
    sw = Syncwd(master_client(sentinels), prefix=PREFIX)
    sw.update_many(t, [{"id": i, "v": i} for i in range(500)])
    through = ["--sentinel", sentinels.addresses, "--service", sentinels.service, "--prefix", PREFIX]

    status = CliRunner().invoke(main, ["status", *through, "--json"])
    assert status.exit_code == 0, status.output
    assert last_json(status.output)["tables"][t.name]["dirty"] == 500

    drained = CliRunner().invoke(main, ["drain", *through, "--dsn", dsn, "--json"])
    assert drained.exit_code == 0, drained.output
    assert last_json(drained.output)["upserted"] == 500
    assert count(db, t.name) == 500

    # A real process, the sentinels in the variables; then the URL form.
    sw.update(t, {"id": 1, "v": -1})
    env = {"SYNCWD_SENTINEL": sentinels.addresses, "SYNCWD_SERVICE": sentinels.service, "SYNCWD_PREFIX": PREFIX}
    out = cli("status", "--json", env=env)
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["tables"][t.name]["dirty"] == 1
    out = cli("drain", "--redis", sentinels.url, "--dsn", dsn, "--prefix", PREFIX, "--json")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["upserted"] == 1
    assert db.execute(f"SELECT v FROM {schema}.s WHERE id = 1").fetchone() == (-1,)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--service", "syncwd"], "--service needs --sentinel"),
        (["--sentinel", "127.0.0.1:x", "--service", "syncwd"], "--sentinel takes host:port"),
        (["--sentinel", "{sentinels}"], "--sentinel needs --service"),
        (["--sentinel", "{sentinels}", "--service", "nope"], "monitor no service 'nope'"),
        (["--sentinel", "{sentinels}", "--service", "syncwd", "--cluster"], "--cluster with Sentinel"),
        (["--redis", "redis+sentinel://{sentinels}/syncwd/0", "--service", "syncwd"], "not both"),
    ],
)
def test_bad_sentinel_options_are_usage_errors(sentinels: RedisSentinelServers, args: list[str], said: str) -> None:
    args = [a.replace("{sentinels}", sentinels.addresses) for a in args]
    result = CliRunner().invoke(main, ["status", *args, "--json"])
    assert result.exit_code == 2, result.output
    assert said in last_json(result.stdout)["error"]


def test_redis_gives_the_master_its_user_password_and_database(sentinels: RedisSentinelServers) -> None:
    for server in sentinels.servers:  # ACL users are not replicated: each server gets it
        with redis.Redis(port=server.port) as c:
            c.acl_setuser("app", enabled=True, passwords=["+app-pw-1"], keys=["*"], commands=["+@all"])
    sw = Syncwd(redis_from_sentinel(sentinels.addresses, sentinels.service, redis_url="redis://app:app-pw-1@x/5"))
    t = Table("s5.t")
    sw.update(t, {"id": 1})
    with redis.Redis(port=sentinels.master().port, db=5) as c:
        assert c.exists(t.keys(0, "syncwd").dirty)
    through = ["status", "--sentinel", sentinels.addresses, "--service", sentinels.service, "--json"]
    out = cli(*through, "--redis", "redis://app:app-pw-1@ignored:1/5")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["tables"][t.name]["dirty"] == 1
    assert t.name not in last_json(cli(*through).stdout)["tables"]  # database 0
    out = cli(*through, "--redis", "redis://app:wrong-pw@/5")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "invalid username-password" in last_json(out.stdout)["error"] and "wrong-pw" not in out.stdout + out.stderr


def test_sentinels_with_a_password() -> None:
    for servers in _start(sentinel_password="s3cret-sentinel"):
        through = ["--sentinel", servers.addresses, "--service", servers.service]
        out = cli("status", *through, "--json")
        assert out.returncode == 2, out.stdout + out.stderr
        assert "--sentinel-password" in last_json(out.stdout)["error"]
        out = cli("status", *through, "--json", env={"SYNCWD_SENTINEL_PASSWORD": "s3cret-sentinel"})
        assert out.returncode == 0, out.stderr
        assert "s3cret-sentinel" not in out.stdout + out.stderr


class Writers:
    """Threads updating records around a failover, over ids of their own.

    A write counts (``expected``) once the replica holds it too: WAIT 1 on the
    writer's own connection said so, or the master it reached is the last one
    (after a SIGKILL, the only one left). A write that failed, or that no
    replica acknowledged, may be lost by Redis itself (asynchronous
    replication): its id is written again until one counts."""

    def __init__(self, servers: RedisSentinelServers, sw_of: Any, ids: range, threads: int = 2) -> None:
        self.servers = servers
        self.sw_of = sw_of
        self.expected: dict[int, int] = {}
        self.uncounted: set[int] = set()
        self.writes = 0
        self.failed = 0
        self.last_master_only = threading.Event()  # set after a SIGKILL's failover: no replica is left
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(ids[n::threads], n), daemon=True) for n in range(threads)
        ]

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)

    def _run(self, ids: range, seed: int) -> None:
        rng = random.Random(seed)
        # One connection, for the writes' pipelines and WAIT alike: WAIT counts the writes of the connection it
        # is sent on.
        own = Sentinel([("127.0.0.1", s.port) for s in self.servers.sentinels]).master_for(
            self.servers.service, max_connections=1, socket_timeout=5
        )
        sw, table = self.sw_of(own)
        mine = list(ids)
        value = 0
        while True:
            with self.lock:
                again = [i for i in mine if i in self.uncounted]
            if self.stopping.is_set() and not again:
                return
            record = again[0] if again else rng.choice(mine)
            value += 1
            after_kill = self.last_master_only.is_set()
            try:
                sw.update(table, {"id": record, "v": value * 100 + seed})
                counted = after_kill or own.wait(1, 1000) >= 1
            except redis.RedisError:
                counted = False
            with self.lock:
                self.writes += 1
                if counted:
                    self.expected[record] = value * 100 + seed
                    self.uncounted.discard(record)
                else:
                    self.failed += 1
                    self.uncounted.add(record)
            time.sleep(0.002 if counted else 0.1)


def test_a_connection_dropped_mid_call_reconnects_to_the_new_master(own_sentinels: RedisSentinelServers) -> None:
    """redis-py's sentinel connection asks the sentinels when its pool hands
    it out; reconnecting inside a call (its Retry, a single-connection
    client, the drain's held connection) it went back to the old master."""
    client = master_client(own_sentinels)
    single = redis.Redis(connection_pool=client.connection_pool, single_connection_client=True)
    single.set("k", 1)
    old = own_sentinels.master()
    redis.Redis(port=own_sentinels.sentinels[0].port).execute_command("SENTINEL", "FAILOVER", own_sentinels.service)
    assert wait_for(lambda: _role(old) == "slave", timeout=30)
    for attempt in range(3):
        try:
            single.set("k", 2)
            break
        except redis.ConnectionError:  # a connection to the demoted master fails once, then follows
            assert attempt == 0
    assert single.connection.port == own_sentinels.master().port != old.port
    assert client.get("k") == b"2"


@pytest.mark.parametrize("how", ["failover", "promoted", "kill"])
def test_failover_in_the_middle_of_a_drain_loses_nothing(
    own_sentinels: RedisSentinelServers, db: Any, dsn: str, schema: str, how: str
) -> None:
    """The master fails over (SENTINEL FAILOVER, or SIGKILL and the replica
    promoted) after the drain's first batch is in PostgreSQL, while writers
    write; the drain follows the new master and finishes, and PostgreSQL ends
    with every record's latest value the new master holds."""
    servers = own_sentinels
    db.execute(f"CREATE TABLE {schema}.f (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.f", partitions=4)
    # redis-py's own Sentinel client, as the API takes it; the CLI's (redis_from_sentinel) through the SIGKILL.
    own = Sentinel([("127.0.0.1", s.port) for s in servers.sentinels]).master_for(servers.service)
    client = master_client(servers) if how == "kill" else own
    Syncwd(client, prefix=PREFIX).update_many(t, [{"id": i, "v": 0} for i in range(3000)])
    assert client.wait(1, 5000) == 1
    old = servers.master()
    failed_over = threading.Event()

    def fail_over(table: str, partition: int, rows: int) -> None:
        if failed_over.is_set():
            return
        if how == "kill":
            old.stop(kill=True)
        else:
            redis.Redis(port=servers.sentinels[0].port).execute_command("SENTINEL", "FAILOVER", servers.service)
        assert wait_for(lambda: servers.master() is not old, timeout=30), "no failover"
        if how == "kill":
            writers.last_master_only.set()
        elif how == "failover":  # the old master is a replica of the new one: clients reconnect
            assert wait_for(lambda: _role(old) == "slave", timeout=30)
        # "promoted": the drain goes on with the old master until Sentinel demotes it (seconds later):
        # whatever it does there is lost, as the writers' writes are.
        failed_over.set()

    with Writers(servers, lambda c: (Syncwd(c, prefix=PREFIX), t), range(3000)) as writers:
        assert wait_for(lambda: writers.writes > 50, timeout=30)
        report = FastDrainer(
            client, dsn, prefix=PREFIX, batch=200, retries=8, on_batch=fail_over, lease_seconds=20
        ).drain()
        assert failed_over.is_set()
        assert report.exit_code == 0, report.to_dict()
        writes_after = writers.writes
        assert wait_for(lambda: writers.writes > writes_after + 50, timeout=30)  # writing to the new master
    assert not writers.uncounted, writers.uncounted
    assert writers.failed > 0  # the failover was felt by the writers too

    again = FastDrainer(client, dsn, prefix=PREFIX, batch=500).drain()
    print("again:", again.to_dict())  # what was written after the first
    assert again.exit_code == 0, again.to_dict()
    in_pg = dict(db.execute(f"SELECT id, v FROM {schema}.f").fetchall())
    expected = {i: writers.expected.get(i, 0) for i in range(3000)}
    sw = Syncwd(client, prefix=PREFIX)
    in_redis = {i: sw.get(t, i)["v"] for i in range(3000)}
    assert in_redis == expected  # Redis kept every counted write: the test counts right
    assert in_pg == expected


def _role(server: Any) -> str:
    try:
        with redis.Redis(port=server.port, socket_timeout=2) as c:
            return str(c.info("replication").get("role"))
    except redis.RedisError:
        return ""


def test_cli_drain_survives_a_sigkill_of_the_master(
    own_sentinels: RedisSentinelServers, db: Any, dsn: str, schema: str, base_dsn: str
) -> None:
    """A real `syncwd-fast drain --sentinel ...` process: its first batch waits
    on a lock the test holds on the table, the master is killed and its
    replica promoted, then the lock is let go. The drain acks on the new
    master and finishes; PostgreSQL holds every record."""
    servers = own_sentinels
    db.execute(f"CREATE TABLE {schema}.k (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.k", partitions=2)
    client = master_client(servers)
    Syncwd(client, prefix=PREFIX).update_many(t, [{"id": i, "v": i} for i in range(2000)])
    assert client.wait(1, 5000) == 1
    old = servers.master()
    with psycopg.connect(base_dsn) as locker:
        locker.execute(f"LOCK TABLE {schema}.k IN EXCLUSIVE MODE")  # reads go on, writes wait
        drain = subprocess.Popen(
            [
                *drain_command("redis://ignored/0", dsn, PREFIX, "--json", "--batch", "500", "--retries", "8"),
                *("--sentinel", servers.addresses, "--service", servers.service),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        waiting = (
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            f" AND application_name = 'syncwd-fast' AND query LIKE '%{schema}%'"
        )
        assert wait_for(lambda: db.execute(waiting).fetchone() != (0,), timeout=30)  # a batch is being merged
        old.stop(kill=True)
        assert wait_for(lambda: servers.master() is not old, timeout=30), "no failover"
    out, err = drain.communicate(timeout=120)
    assert drain.returncode == 0, err
    assert last_json(out)["exit_code"] == 0
    assert dict(db.execute(f"SELECT id, v FROM {schema}.k").fetchall()) == {i: i for i in range(2000)}
    assert status(client, prefix=PREFIX)["tables"][t.name]["dirty"] == 0
