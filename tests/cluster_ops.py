"""What an operator (or a fault) does to a running Redis Cluster, for the
failover and resharding tests: find a slot's master, kill it and wait for its
replica to take over, let a replica catch up, move a slot by hand."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis as redis_lib
from redis.cluster import RedisCluster

from syncwd_fast.servers import RedisClusterServers, RedisServer, ServerUnavailable

from .helpers import wait_for


def own_cluster(replicas: int = 0) -> Iterator[RedisClusterServers]:
    """A throwaway cluster of 3 masters (``replicas`` each) for a fixture to
    yield from: a test that kills nodes or moves slots needs one of its own."""
    try:
        servers = RedisClusterServers(3, replicas=replicas).start()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    yield servers
    servers.close()


def connect(cluster: RedisClusterServers, **options: Any) -> RedisCluster:
    """A cluster client, through a node still alive."""
    return RedisCluster.from_url(live(cluster)[0].url, socket_timeout=10, socket_connect_timeout=2, **options)


def client(node: RedisServer) -> redis_lib.Redis:
    return redis_lib.Redis(host="127.0.0.1", port=node.port, decode_responses=True, socket_timeout=10)


def live(cluster: RedisClusterServers) -> list[RedisServer]:
    return [n for n in cluster.nodes if n.process is not None and n.process.poll() is None]


def node_id(node: RedisServer) -> str:
    with client(node) as c:
        return str(c.execute_command("CLUSTER MYID"))


def owner(cluster: RedisClusterServers, slot: int, seen_by: RedisServer | None = None) -> RedisServer:
    """The master serving ``slot``, as ``seen_by`` (any live node) sees it."""
    with client(seen_by or live(cluster)[0]) as c:
        for start, end, (_host, port, *_rest), *_replicas in c.execute_command("CLUSTER SLOTS"):
            if int(start) <= slot <= int(end):
                return next(n for n in cluster.nodes if n.port == int(port))
    raise LookupError(f"no node serves slot {slot}")


def replica_of(cluster: RedisClusterServers, master: RedisServer) -> RedisServer:
    with client(master) as c:
        (address,) = c.execute_command("CLUSTER REPLICAS", node_id(master))  # redis-py: {address: ...}
    port = int(address.rsplit(":", 1)[1])
    return next(n for n in cluster.nodes if n.port == port)


def caught_up(master: RedisServer, replica: RedisServer, timeout: float = 10.0) -> None:
    """Wait until ``replica`` holds everything ``master`` had when called
    (what WAIT would say of one connection, for every connection's writes)."""
    with client(master) as m, client(replica) as r:
        target = int(m.info("replication")["master_repl_offset"])
        if not wait_for(lambda: int(r.info("replication").get("slave_repl_offset", -1)) >= target, timeout, 0.005):
            raise AssertionError(f"replica {replica.port} did not catch up with {master.port}")


def kill(node: RedisServer) -> None:
    """SIGKILL: no goodbye to the cluster, no last write flushed."""
    node.stop(kill=True)


def wait_failed_over(cluster: RedisClusterServers, slot: int, dead: RedisServer, timeout: float = 30.0) -> RedisServer:
    """Wait until every live node reports cluster_state:ok with ``slot``
    served by a node other than ``dead``; that node (the promoted replica)."""

    def done() -> bool:
        for node in live(cluster):
            try:
                with client(node) as c:
                    if c.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                        return False
                if owner(cluster, slot, node) is dead:
                    return False
            except redis_lib.RedisError:
                return False
        return True

    if not wait_for(done, timeout, 0.05):
        raise AssertionError(f"slot {slot} was not failed over within {timeout:.0f}s")
    return owner(cluster, slot)


def migrate_slot(
    cluster: RedisClusterServers,
    slot: int,
    target: RedisServer,
    keys_per_step: int = 20,
    pause: float = 0.005,
    on_step: Callable[[int], Any] | None = None,
) -> int:
    """Move ``slot`` to ``target`` as ``redis-cli --cluster reshard`` does:
    IMPORTING on the target, MIGRATING on the source, MIGRATE a few keys at a
    time (``pause`` between steps, so that clients meet the slot half moved:
    ASK and TRYAGAIN), then SETSLOT NODE everywhere. Returns the keys moved."""
    source = owner(cluster, slot)
    if source is target:
        raise ValueError("the slot is on the target already")
    source_id, target_id = node_id(source), node_id(target)
    moved = 0
    with client(source) as src, client(target) as dst:
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        while True:
            keys = src.execute_command("CLUSTER GETKEYSINSLOT", slot, keys_per_step)
            if not keys:
                break
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 10000, "KEYS", *keys)
            moved += len(keys)
            if on_step:
                on_step(moved)
            time.sleep(pause)
        # The target first: once it owns the slot, the source's MOVED points
        # clients at a node that serves it (the order redis-cli uses).
        dst.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        src.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
    for node in masters(cluster):  # the other masters learn it at once rather than by gossip
        if node not in (source, target):
            with client(node) as c:
                c.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
    return moved


def masters(cluster: RedisClusterServers) -> list[RedisServer]:
    ports = set()
    with client(live(cluster)[0]) as c:
        for _start, _end, (_host, port, *_rest), *_replicas in c.execute_command("CLUSTER SLOTS"):
            ports.add(int(port))
    return [n for n in cluster.nodes if n.port in ports]
