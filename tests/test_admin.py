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
    for last in (got["tables"][drained.name]["last_run"], printed["tables"][drained.name]["last_run"]):
        assert last.pop("ago") >= 0  # seconds since it finished: moves with the clock
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


def test_get_shows_one_records_state_through_its_life(
    r: Any, redis_url: str, dsn: str, prefix: str, drained: Table
) -> None:
    from syncwd_fast import scripts

    name = drained.name
    state = syncwd_fast.record(r, name, 5, prefix=prefix)  # landed by the fixture's drain
    assert state["value"] == {"id": 5, "v": 2} and state["ttl_ms"] > 0 and not state["dirty"]
    assert state["dead_letter"] is None and not state["in_run"] and not state["in_flight"]
    state = syncwd_fast.record(r, name, "1", prefix=prefix)  # refused by the CHECK
    assert state["dead_letter"]["error"].startswith("new row") or "check" in state["dead_letter"]["error"]
    assert state["ttl_ms"] is None  # a dead letter's value never expires
    state = syncwd_fast.record(r, name, 20, prefix=prefix)  # written after the drain
    assert state["dirty"] and state["ttl_ms"] is None
    keys = drained.keys(drained.partition("20"), prefix)
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    snap = scripts.snapshot(r, keys, "tok", "RUN1")
    scripts.pop(r, keys, snap.run, "tok", 100, 60_000)
    state = syncwd_fast.record(r, name, 20, prefix=prefix)
    assert (state["dirty"], state["in_run"], state["in_flight"]) == (False, True, True)
    out = cli("get", name, "20", "--redis", redis_url, "--prefix", prefix)
    assert out.returncode == 0 and orjson.loads(out.stdout) == orjson.loads(orjson.dumps(state))
    Syncwd(r, prefix=prefix).delete(drained, 20)
    assert syncwd_fast.record(r, name, 20, prefix=prefix)["value"] == {"deleted": True}
    assert cli("get", "no.such", "1", "--redis", redis_url, "--prefix", prefix).returncode == 2
