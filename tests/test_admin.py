"""The operator's commands as Python functions (syncwd_fast.status,
dead_letters, retry_dead_letters, purge_dead_letters): the CLI prints what
they return, so each is checked against its command on the same state."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import syncwd_fast
from syncwd_fast import ConfigurationError, FastDrainer, Syncwd, Table

from .helpers import cli, last_json


@pytest.fixture
def drained(r: Any, db: Any, dsn: str, schema: str, prefix: str) -> Table:
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY, v int CHECK (v >= 0))")
    t = Table(f"{schema}.a", partitions=2)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i - 3} for i in range(10)])  # 0, 1, 2 refused
    FastDrainer(r, dsn, prefix=prefix).drain()
    Syncwd(r, prefix=prefix).update(t, {"id": 20, "v": 1})  # one waiting
    return t


def test_status_is_what_the_command_prints(r: Any, redis_url: str, prefix: str, drained: Table) -> None:
    got = syncwd_fast.status(r, prefix=prefix)
    printed = last_json(cli("status", "--redis", redis_url, "--prefix", prefix, "--json").stdout)
    assert orjson.loads(orjson.dumps(got)) == printed
    assert got["tables"][drained.name]["dead"] == 3 and got["tables"][drained.name]["dirty"] == 1


def test_dead_letters_retry_and_purge(r: Any, redis_url: str, prefix: str, drained: Table) -> None:
    listed = sorted(e.id for e in syncwd_fast.dead_letters(r, prefix=prefix, tables=[drained.name]))
    out = cli("dead-letter", "list", "--redis", redis_url, "--prefix", prefix, "--json")
    assert listed == sorted(orjson.loads(line)["id"] for line in out.stdout.splitlines()) == ["0", "1", "2"]

    retried = syncwd_fast.retry_dead_letters(r, prefix=prefix, ids=["1", "9", "nope"])
    assert isinstance(retried, syncwd_fast.Retried)
    assert retried.tables == {drained.name: 1} and retried.count == 1 and retried.not_found == ["9", "nope"]
    assert r.sismember(drained.keys(drained.partition("1"), prefix).dirty, "1")

    assert syncwd_fast.purge_dead_letters(r, prefix=prefix, ids=["0"]) == 1
    assert sorted(e.id for e in syncwd_fast.dead_letters(r, prefix=prefix)) == ["1", "2"]


def test_a_bad_prefix_or_an_unknown_table_is_a_configuration_error(r: Any, prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid key prefix"):  # as Syncwd and FastDrainer say it
        syncwd_fast.status(r, prefix="bad prefix")
    with pytest.raises(ConfigurationError, match="not registered"):
        list(syncwd_fast.dead_letters(r, prefix=prefix, tables=["no.such"]))


def test_status_says_when_each_table_was_last_drained(r: Any, dsn: str, prefix: str, drained: Table) -> None:
    import time

    t = syncwd_fast.status(r, prefix=prefix)["tables"][drained.name]
    assert abs(t["last_drained_at"] - time.time()) < 60 and t["all_drained_at"] <= t["last_drained_at"]
    fresh = Table("adm.fresh", partitions=2)
    Syncwd(r, prefix=prefix).update(fresh, {"id": 1})
    t = syncwd_fast.status(r, prefix=prefix)["tables"][fresh.name]
    assert t["last_drained_at"] is None and t["all_drained_at"] is None
