"""dead-letter purge while a newer value of the record is being drained: the
newer value must keep no TTL until its own ack, or it expires before it is
durable and the drain dead-letters it as "value missing"."""

from __future__ import annotations

import time

import pytest

from syncwd_fast import FastDrainer, Syncwd, Table, scripts
from syncwd_fast.deadletter import list_dead, purge_dead

from .helpers import in_flight, rows

TTL = 1  # seconds: short enough for a TTL set by mistake to expire within the test


@pytest.fixture
def t(db, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, score int CONSTRAINT score_positive CHECK (score > 0))")
    return Table(f"{schema}.p", ttl=TTL)


def dead_then_newer(r, dsn, prefix, t, newer_score):
    """Record 1 dead-lettered, then a newer value of it written; returns the writer."""
    sw = Syncwd(r, prefix=prefix)
    sw.update(t, {"id": 1, "score": -1})
    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert (report.exit_code, report.dead_lettered) == (1, 1)
    sw.update(t, {"id": 1, "score": newer_score})
    return sw


def stop_a_drain_at(r, keys, stage):
    """A drainer that took the lease and got as far as ``stage``, then stopped:
    the newer value sits in the active run set (snapshot) or in flight (pop)."""
    token = "stopped-drainer"
    assert scripts.lease(r, keys, "acquire", token, 60_000)
    snap = scripts.snapshot(r, keys, token, "R1")
    assert (snap.run, snap.size) == ("R1", 1) and not r.exists(keys.dirty)
    if stage == "in flight":
        assert scripts.pop(r, keys, snap.run, token, 10, 60_000).ids == ["1"]
        assert in_flight(r, keys, "R1") == ["1"]
    else:
        assert r.smembers(keys.run("R1")) == {b"1"}
    assert scripts.lease(r, keys, "release", token)  # its successor adopts the run at once


@pytest.mark.parametrize("stage", ["run set", "in flight"])
def test_purge_gives_no_ttl_to_a_newer_value_still_being_drained(r, db, dsn, prefix, t, stage):
    dead_then_newer(r, dsn, prefix, t, newer_score=5)
    keys = t.keys(0, prefix)
    stop_a_drain_at(r, keys, stage)

    assert purge_dead(r, prefix, ids=["1"]) == 1
    assert list(list_dead(r, prefix)) == []
    assert r.ttl(keys.value("1")) == -1
    time.sleep(TTL + 0.5)  # a TTL set by mistake would have dropped the value by now

    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert (report.exit_code, report.upserted, report.dead_lettered) == (0, 1, 0), report.to_dict()
    assert rows(db, t.name) == [(1, 5)]
    assert list(list_dead(r, prefix)) == []
    assert 0 < r.ttl(keys.value("1")) <= TTL  # durable now: the ack starts the cache TTL


def test_purge_with_nothing_pending_starts_the_ttl(r, db, dsn, prefix, t):
    sw = Syncwd(r, prefix=prefix)
    sw.update(t, {"id": 1, "score": -1})
    FastDrainer(r, dsn, prefix=prefix).drain()
    keys = t.keys(0, prefix)
    assert r.ttl(keys.value("1")) == -1  # dead letters keep their value
    assert purge_dead(r, prefix) == 1
    assert 0 < r.ttl(keys.value("1")) <= TTL


def test_a_value_dead_lettered_again_loses_any_ttl(r, db, dsn, prefix, t):
    # The newer value is refused too. Whatever TTL it was given while in flight
    # (as the purge did before it checked the run), dead-lettering it keeps it.
    dead_then_newer(r, dsn, prefix, t, newer_score=-2)
    keys = t.keys(0, prefix)
    stop_a_drain_at(r, keys, "in flight")
    r.expire(keys.value("1"), 60)

    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert (report.exit_code, report.dead_lettered) == (1, 1)
    (entry,) = list_dead(r, prefix)
    assert entry.attempts == 2 and "score_positive" in entry.error
    assert r.ttl(keys.value("1")) == -1
    assert r.get(keys.value("1")) == b'{"id":1,"score":-2}'
