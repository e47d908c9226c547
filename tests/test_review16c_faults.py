"""Review of b6ff02b (Merger._typed_only): faults inside the typed-only
transaction are raised (never retried through the full stage), and nothing
is written."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
import pytest

from syncwd_fast.errors import LeaseLost
from syncwd_fast.sinks.postgres.merge import Merger

from .helpers import merger_for


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real_t, real_f = Merger._typed_only, Merger._transaction

    def typed(merger: Merger, batch: Any) -> Any:
        calls.append("typed")
        return real_t(merger, batch)

    def full(merger: Merger, *args: Any) -> Any:
        calls.append("full")
        return real_f(merger, *args)

    monkeypatch.setattr(Merger, "_typed_only", typed)
    monkeypatch.setattr(Merger, "_transaction", full)
    return calls


@pytest.mark.parametrize("pure", [False, True], ids=["c", "python"])
def test_a_backend_killed_mid_statement_raises(db, dsn, schema, monkeypatch, pure) -> None:
    table = f"{schema}.killed"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")
    db.execute(
        f"CREATE FUNCTION {schema}.die() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.name = 'die' THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NEW; END $$"
    )
    db.execute(f"CREATE TRIGGER d BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {schema}.die()")
    calls = _spy(monkeypatch)
    conn, decoder, merger = merger_for(dsn, table, pure=pure)
    try:
        batch = [(str(k), orjson.dumps({"id": k, "name": "die" if k == 2 else "x"})) for k in (1, 2, 3)]
        with pytest.raises(psycopg.OperationalError):
            merger.merge(decoder.decode([r for r, _ in batch], [d for _, d in batch]))
    finally:
        conn.close()
    assert calls == ["typed"]
    assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


@pytest.mark.parametrize("pure", [False, True], ids=["c", "python"])
def test_a_statement_timeout_raises(db, dsn, schema, monkeypatch, pure) -> None:
    table = f"{schema}.slow"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")
    db.execute(
        f"CREATE FUNCTION {schema}.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.name = 'slow' THEN PERFORM pg_sleep(2); END IF; RETURN NEW; END $$"
    )
    db.execute(f"CREATE TRIGGER d BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {schema}.slow()")
    calls = _spy(monkeypatch)
    conn, decoder, merger = merger_for(dsn, table, pure=pure)
    conn.execute("SET statement_timeout = '300ms'")
    try:
        batch = [(str(k), orjson.dumps({"id": k, "name": "slow" if k == 2 else "x"})) for k in (1, 2, 3)]
        with pytest.raises(psycopg.errors.QueryCanceled):
            merger.merge(decoder.decode([r for r, _ in batch], [d for _, d in batch]))
    finally:
        conn.close()
    assert calls == ["typed"]
    assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


@pytest.mark.parametrize("pure", [False, True], ids=["c", "python"])
def test_a_row_lock_wait_past_lock_timeout_raises(db, dsn, schema, monkeypatch, pure) -> None:
    table = f"{schema}.locked"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text)")
    db.execute(f"INSERT INTO {table} VALUES (2, 'old')")
    calls = _spy(monkeypatch)
    conn, decoder, merger = merger_for(dsn, table, pure=pure)
    conn.execute("SET lock_timeout = '300ms'")
    holder = psycopg.connect(dsn)
    try:
        holder.execute(f"SELECT * FROM {table} WHERE id = 2 FOR UPDATE")
        batch = [(str(k), orjson.dumps({"id": k, "name": "new"})) for k in (1, 2, 3)]
        with pytest.raises(psycopg.errors.LockNotAvailable):
            merger.merge(decoder.decode([r for r, _ in batch], [d for _, d in batch]))
    finally:
        holder.rollback()
        holder.close()
        conn.close()
    assert calls == ["typed"]
    assert db.execute(f"SELECT id, name FROM {table} ORDER BY id").fetchall() == [(2, "old")]


@pytest.mark.parametrize("pure", [False, True], ids=["c", "python"])
def test_a_lease_lost_with_a_deferred_check_pending_writes_nothing(db, dsn, schema, monkeypatch, pure) -> None:
    table = f"{schema}.fenced2"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, u int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    calls = _spy(monkeypatch)
    conn, decoder, merger = merger_for(dsn, table, pure=pure)
    merger.still_leased = lambda: False
    try:
        batch = [(str(k), orjson.dumps({"id": k, "u": k})) for k in (1, 2, 3)]
        with pytest.raises(LeaseLost):
            merger.merge(decoder.decode([r for r, _ in batch], [d for _, d in batch]))
    finally:
        conn.close()
    assert calls == ["typed"]
    assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
