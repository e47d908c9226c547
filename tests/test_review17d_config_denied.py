"""A Redis user the ACL denies CONFIG (or INFO), as least privilege has it:
`status` and the drain say what they cannot know nothing about, instead of
refusing to run ("Redis refused: NOPERM")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

import syncwd_fast
from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.checks import redis_warnings
from syncwd_fast.servers import RedisServer, ServerUnavailable

from .helpers import cli, count, last_json


@pytest.fixture
def server() -> Iterator[RedisServer]:
    try:
        s = RedisServer().start()  # --save "" --appendonly no: no persistence
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    yield s
    s.close()


def user(s: RedisServer, name: str, *rules: str) -> Any:
    admin = redis_lib.Redis.from_url(s.url)
    admin.execute_command("ACL", "SETUSER", name, "on", ">pw", "~*", "&*", "+@all", *rules)
    return redis_lib.Redis(host="127.0.0.1", port=s.port, username=name, password="pw")


def test_status_and_drain_without_config(server: RedisServer, db: Any, dsn: str, schema: str) -> None:
    r = user(server, "noconfig", "-config")
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY)")
    t = Table(f"{schema}.a")
    Syncwd(r).update(t, {"id": 1})
    assert redis_warnings(r) == []  # no persistence, but CONFIG cannot tell
    got = syncwd_fast.status(r)
    assert got["tables"][t.name]["dirty"] == 1 and got["warnings"] == []
    out = cli("status", "--redis", f"redis://noconfig:pw@127.0.0.1:{server.port}/0", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert last_json(out.stdout)["tables"][t.name]["dirty"] == 1
    report = FastDrainer(r, dsn).drain()
    assert report.upserted == 1 and count(db, f"{schema}.a") == 1


def test_status_without_info_still_says_what_config_tells(server: RedisServer) -> None:
    r = user(server, "noinfo", "-info")
    Syncwd(r).update(Table("w.t"), {"id": 1})
    (said,) = redis_warnings(r)
    assert "no persistence" in said
    assert syncwd_fast.status(r)["warnings"] == [said]
