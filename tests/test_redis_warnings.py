"""The Redis settings `status` warns about (checks.redis_warnings), each
against a throwaway redis-server of its own set that way: no persistence,
RDB snapshots alone, appendfsync no, persistence failing, noeviction close
to maxmemory; none of them once set right; what needs CONFIG unsaid where
CONFIG is renamed away."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

import syncwd_fast
from syncwd_fast import Syncwd, Table
from syncwd_fast.checks import redis_warnings
from syncwd_fast.servers import RedisServer, ServerUnavailable

from .helpers import cli, last_json, wait_for


def started(**kwargs: Any) -> RedisServer:
    try:
        return RedisServer(**kwargs).start()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def server() -> Iterator[RedisServer]:
    s = started()
    yield s
    s.close()


def client(s: RedisServer) -> Any:
    return redis_lib.Redis.from_url(s.url)


def aof_on(r: Any) -> None:
    """appendonly yes, once its first rewrite is done: Redis will not shut down while writing it."""
    r.config_set("appendonly", "yes")
    done = ("aof_rewrite_in_progress", "aof_rewrite_scheduled")
    assert wait_for(lambda: not any(int(r.info("persistence")[k]) for k in done), timeout=30)


def about(warnings: list[str], text: str) -> list[str]:
    return [w for w in warnings if text in w]


def test_no_persistence_is_warned_by_status(server: RedisServer) -> None:
    r = client(server)  # RedisServer runs with --save "" --appendonly no
    Syncwd(r).update(Table("w.t"), {"id": 1})
    (said,) = about(redis_warnings(r), "no persistence")
    assert f"Redis at 127.0.0.1:{server.port}" in said and "loses every record not yet drained" in said
    out = cli("status", "--redis", server.url, "--json")
    assert out.returncode == 0, out.stderr
    assert about(last_json(out.stdout)["warnings"], "no persistence") == [said]
    assert "no persistence" in cli("status", "--redis", server.url).stderr
    r.config_set("save", "3600 1")
    assert about(redis_warnings(r), "no persistence") == []
    (said,) = about(redis_warnings(r), "RDB snapshots alone")
    assert "save 3600 1" in said
    aof_on(r)
    assert redis_warnings(r) == []  # AOF with fsync every second: nothing to say


def test_appendfsync_no_is_warned() -> None:
    s = started(appendonly=True)
    try:
        r = client(s)
        assert redis_warnings(r) == []  # appendfsync always
        r.config_set("appendfsync", "no")
        (said,) = redis_warnings(r)
        assert "appendfsync no" in said
        r.config_set("appendfsync", "everysec")
        assert redis_warnings(r) == []
    finally:
        s.close()


def test_a_failing_save_is_warned(server: RedisServer) -> None:
    r = client(server)
    r.config_set("save", "3600 1")
    assert about(redis_warnings(r), "fails to persist") == []
    shutil.rmtree(server.dir)  # its working directory: a save cannot create its file
    try:
        r.bgsave()
        assert wait_for(lambda: r.info("persistence")["rdb_last_bgsave_status"] == "err", timeout=30)
        (said,) = about(redis_warnings(r), "fails to persist")
        assert "rdb_last_bgsave_status err" in said
    finally:
        r.config_set("save", "")  # else its shutdown tries a last save, fails and does not exit


def test_noeviction_close_to_maxmemory_is_warned(server: RedisServer) -> None:
    r = client(server)
    aof_on(r)
    r.set("ballast", b"x" * 2_000_000)
    used = int(r.info("memory")["used_memory"])
    r.config_set("maxmemory", str(used * 3))
    r.config_set("maxmemory-policy", "noeviction")
    assert redis_warnings(r) == []  # a third full
    r.config_set("maxmemory", str(int(used * 1.05)))
    (said,) = redis_warnings(r)
    assert "of maxmemory" in said and "refuses writes" in said
    r.config_set("maxmemory-policy", "volatile-lru")  # durable values can go: no refusal ahead
    assert redis_warnings(r) == []
    r.config_set("maxmemory-policy", "allkeys-lru")
    (said,) = redis_warnings(r)
    assert "maxmemory-policy allkeys-lru" in said  # the eviction warning, said as drain says it
    r.config_set("maxmemory", "0")


def test_config_renamed_away_says_nothing_it_cannot_know() -> None:
    s = started(extra_args=("--rename-command", "CONFIG", ""))
    try:
        r = client(s)
        Syncwd(r).update(Table("w.t"), {"id": 1})
        assert redis_warnings(r) == []  # no persistence, but CONFIG cannot tell
        out = cli("status", "--redis", s.url, "--json")
        assert out.returncode == 0, out.stderr
        assert last_json(out.stdout)["warnings"] == []
        assert syncwd_fast.status(r)["warnings"] == []
    finally:
        s.close()
