"""A record written after a delete is a new row, whatever the drain's timing
(lua/write.lua's tombstone set and recreated hash, ack's generation check)."""

from __future__ import annotations

import psycopg
import pytest

from syncwd_fast import FastDrainer, Syncwd, Table, scripts
from syncwd_fast.keys import PartitionKeys

from .helpers import rows
from .targets import db, dsn, schema, target  # noqa: F401  (each test against each built-in sink)

ENTRY = Table("t").to_registry()


@pytest.fixture
def secret(db, schema):
    db.execute(f"CREATE TABLE {schema}.s (id int PRIMARY KEY, a int, b text, c int NOT NULL DEFAULT 42)")
    return Table(f"{schema}.s", partitions=2)


def drain(r, dsn, prefix, **kw):
    report = FastDrainer(r, dsn, prefix=prefix, **kw).drain()
    assert report.exit_code == 0, report.summary()
    return report


def test_delete_then_partial_update_in_one_window_is_a_new_row(r, db, dsn, prefix, secret):
    sw = Syncwd(r, prefix=prefix)
    sw.update(secret, {"id": 1, "a": 1, "b": "secret-old", "c": 7})
    sw.update(secret, {"id": 2, "a": 2, "b": "kept", "c": 8})
    drain(r, dsn, prefix)
    sw.delete(secret, 1)
    sw.update(secret, {"id": 1, "a": 5})  # overwrites the tombstone in Redis
    sw.update(secret, {"id": 2, "a": 3})  # a plain partial update beside it
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.deleted) == (2, 0)
    assert rows(db, secret.name) == [(1, 5, None, 42), (2, 3, "kept", 8)]
    # Once durable, the new row takes partial updates like any other.
    sw.update(secret, {"id": 1, "b": "new"})
    drain(r, dsn, prefix)
    assert rows(db, secret.name)[0] == (1, 5, "new", 42)
    keys = secret.keys(secret.partition("1"), prefix)
    assert r.hlen(keys.recreated) == 0 and r.scard(keys.tombs) == 0


def test_with_a_drain_in_between_the_outcome_is_the_same(r, db, dsn, prefix, secret):
    sw = Syncwd(r, prefix=prefix)
    sw.update(secret, {"id": 1, "a": 1, "b": "secret-old", "c": 7})
    drain(r, dsn, prefix)
    sw.delete(secret, 1)
    drain(r, dsn, prefix)
    sw.update(secret, {"id": 1, "a": 5})
    drain(r, dsn, prefix)
    assert rows(db, secret.name) == [(1, 5, None, 42)]


def test_a_write_while_the_tombstone_is_in_flight(r, db, dsn, prefix, secret):
    """The tombstone is merged and, before its ack, the record is written again:
    the new value is still a new row (the delete already landed, the insert
    must not resurrect old columns either way)."""
    sw = Syncwd(r, prefix=prefix)
    sw.update(secret, {"id": 1, "a": 1, "b": "secret-old", "c": 7})
    drain(r, dsn, prefix)
    sw.delete(secret, 1)
    written = []

    def write_during_merge(table: str, partition: int, n: int) -> None:
        if not written:
            written.append(sw.update(secret, {"id": 1, "a": 5}))

    report = FastDrainer(r, dsn, prefix=prefix, on_batch=write_during_merge).drain()
    assert report.deleted == 1 and written
    assert rows(db, secret.name) == []
    drain(r, dsn, prefix)
    assert rows(db, secret.name) == [(1, 5, None, 42)]


def test_a_partial_write_after_the_new_row_was_popped_is_partial(r, db, dsn, prefix, secret):
    sw = Syncwd(r, prefix=prefix)
    sw.update(secret, {"id": 1, "a": 1, "b": "secret-old", "c": 7})
    drain(r, dsn, prefix)
    sw.delete(secret, 1)
    sw.update(secret, {"id": 1, "a": 5})
    written = []

    def write_during_merge(table: str, partition: int, n: int) -> None:
        if not written:
            written.append(sw.update(secret, {"id": 1, "b": "later"}))

    drain(r, dsn, prefix, on_batch=write_during_merge)
    assert rows(db, secret.name) == [(1, 5, None, 42)]
    drain(r, dsn, prefix)
    # the new row landed before the partial write: a partial update on top of it
    assert rows(db, secret.name) == [(1, 5, "later", 42)]


def test_delete_recreate_delete_in_one_window_deletes(r, db, dsn, prefix, secret):
    sw = Syncwd(r, prefix=prefix)
    sw.update(secret, {"id": 1, "a": 1, "b": "x", "c": 7})
    drain(r, dsn, prefix)
    sw.delete(secret, 1)
    sw.update(secret, {"id": 1, "a": 5})
    sw.delete(secret, 1)
    assert drain(r, dsn, prefix).deleted == 1
    assert rows(db, secret.name) == []
    keys = secret.keys(secret.partition("1"), prefix)
    assert r.hlen(keys.recreated) == 0 and r.scard(keys.tombs) == 0 and r.get(keys.value("1")) is None


# --- the scripts, one by one ------------------------------------------------------


def test_write_marks_a_value_over_a_pending_tombstone_as_a_new_row(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("1", b'~{"id":1}')]))
    assert r.smembers(keys.tombs) == {b"1"} and not r.exists(keys.recreated)
    scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("1", b'{"id":1,"a":5}'), ("2", b'{"id":2}')]))
    assert not r.exists(keys.tombs)
    assert r.hgetall(keys.recreated) == {b"1": b"1"}  # only the id that was deleted
    scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("1", b'{"id":1,"a":6}')]))
    assert r.hgetall(keys.recreated) == {b"1": b"1"}  # still the same new row
    scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("1", b'~{"id":1}'), ("1", b'{"id":1}')]))
    assert r.hgetall(keys.recreated) == {b"1": b"2"}  # deleted again: another generation
    assert r.hget(keys.meta, "table") == ENTRY


def test_pop_returns_generations_and_ack_clears_only_its_own(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("1", b'~{"id":1}'), ("2", b'~{"id":2}')]))
    scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("1", b'{"id":1}'), ("2", b'{"id":2}')]))
    scripts.snapshot(r, keys, "tok", "R")
    popped = scripts.pop(r, keys, "R", "tok", 10, 60_000)
    assert popped.recreated == {"1": "1", "2": "2"}
    # id 2 is deleted and written again before the ack: a newer generation stays
    scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("2", b'~{"id":2}'), ("2", b'{"id":2,"a":1}')]))
    scripts.ack(r, keys, "R", "tok", 60, [n for n, _ in popped.pops], recreated=popped.recreated)
    assert r.hgetall(keys.recreated) == {b"2": b"3"}
    assert r.ttl(keys.value("1")) > 0 and r.ttl(keys.value("2")) == -1  # 2 is dirty again


def test_pop_returns_no_generations_when_nothing_was_recreated(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("1", b'{"id":1}')]))
    scripts.snapshot(r, keys, "tok", "R")
    assert scripts.pop(r, keys, "R", "tok", 10, 60_000).recreated == {}


def test_ack_of_a_tombstone_forgets_it_unless_redirtied(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("1", b'~{"id":1}'), ("2", b'~{"id":2}')]))
    scripts.snapshot(r, keys, "tok", "R")
    popped = scripts.pop(r, keys, "R", "tok", 10, 60_000)
    scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("2", b'~{"id":2}')]))  # deleted again
    scripts.ack(r, keys, "R", "tok", 60, [n for n, _ in popped.pops], deleted=["1", "2"])
    assert r.smembers(keys.tombs) == {b"2"}
    assert r.get(keys.value("1")) is None and r.get(keys.value("2")) == b'~{"id":2}'


def test_ack_keeps_skipped_values_without_ttl(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    scripts.call(r, "write", *scripts.write_args(keys, ENTRY, [("1", b'{"id":1}'), ("2", b'{"id":2}')]))
    scripts.snapshot(r, keys, "tok", "R")
    popped = scripts.pop(r, keys, "R", "tok", 10, 60_000)
    assert scripts.ack(r, keys, "R", "tok", 60, [n for n, _ in popped.pops], kept=["2"]) == (0, 0)
    assert r.ttl(keys.value("1")) > 0 and r.ttl(keys.value("2")) == -1
    assert not r.exists(keys.inflight("R"))


def test_a_new_row_committed_but_not_acked_is_not_replaced_again(r, db, dsn, prefix, secret):
    """A drainer dies between the COMMIT of a new row after a delete and its
    ack; a partial write follows. The next drain must merge that write onto the
    committed new row (landing.lua noted the transaction; it committed), not
    replace the row again."""
    sw = Syncwd(r, prefix=prefix)
    sw.update(secret, {"id": 1, "a": 1, "b": "old", "c": 7})
    drain(r, dsn, prefix)
    sw.delete(secret, 1)
    sw.update(secret, {"id": 1, "a": 5})

    class Died(Exception):
        pass

    def die_after_commit(table: str, partition: int, n: int) -> None:
        raise Died

    died = FastDrainer(r, dsn, prefix=prefix, on_batch=die_after_commit).drain()
    assert died.exit_code == 3 and rows(db, secret.name) == [(1, 5, None, 42)]
    keys = secret.keys(secret.partition("1"), prefix)
    assert r.hget(keys.recreated, "1").startswith(b"1@")  # generation 1, replaced by a noted transaction
    sw.update(secret, {"id": 1, "c": 9})
    drain(r, dsn, prefix)
    assert rows(db, secret.name) == [(1, 5, None, 9)]
    assert r.hlen(keys.recreated) == 0


@pytest.mark.postgres_only
def test_a_new_row_whose_transaction_rolled_back_is_still_a_new_row(r, db, dsn, prefix, secret):
    sw = Syncwd(r, prefix=prefix)
    sw.update(secret, {"id": 1, "a": 1, "b": "old", "c": 7})
    drain(r, dsn, prefix)
    sw.delete(secret, 1)
    sw.update(secret, {"id": 1, "a": 5})
    keys = secret.keys(secret.partition("1"), prefix)
    with psycopg.connect(dsn) as other:  # a transaction that never commits
        rolled_back = other.execute("SELECT txid_current()").fetchone()[0]
        other.rollback()
    r.hset(keys.recreated, "1", f"1@{rolled_back}")
    sw.update(secret, {"id": 1, "c": 9})
    drain(r, dsn, prefix)
    assert rows(db, secret.name) == [(1, None, None, 9)]  # the delete still happens: a new row
    sw.delete(secret, 1)
    sw.update(secret, {"id": 1, "a": 6})
    r.hset(keys.recreated, "1", "2@99999999999")  # a transaction this server cannot place: not committed
    drain(r, dsn, prefix)
    assert rows(db, secret.name) == [(1, 6, None, 42)]


def test_landing_notes_only_the_generation_it_was_given(r, prefix):
    keys = PartitionKeys(prefix, "t", 0)
    scripts.lease(r, keys, "acquire", "tok", 60_000)
    r.hset(keys.recreated, mapping={"1": "3", "2": "4@99", "3": "7"})
    assert scripts.landing(r, keys, "tok", 1000, {"1": "3", "2": "4", "3": "6"}) == 2
    assert r.hgetall(keys.recreated) == {b"1": b"3@1000", b"2": b"4@1000", b"3": b"7"}
    with pytest.raises(scripts.LeaseLost):
        scripts.landing(r, keys, "other", 1001, {"1": "3"})
