"""Review of b6ff02b (Merger._typed_only): the narrow statement is composed
with schema.Name, which doubles every % of a name for a statement run WITH
parameters, but _typed_only runs it WITHOUT parameters, so PostgreSQL reads
the doubled name literally."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
import pytest

from syncwd_fast.sinks.postgres.merge import Merger

from .helpers import merger_for


def _merge(impl: str, dsn: str, table: str, batch: list[tuple[str, bytes]]) -> Any:
    conn, decoder, merger = merger_for(dsn, table, pure=impl == "python")
    try:
        return merger.merge(decoder.decode([rid for rid, _ in batch], [doc for _, doc in batch]))
    finally:
        conn.close()


def test_a_column_with_a_percent_lands_in_its_own_column(
    impl: str, db: psycopg.Connection[Any], dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Columns "rate%" and "rate%%": a record carrying "rate%" must set
    "rate%" (as the full path does), never "rate%%"."""
    new_t, old_t = f"{schema}.pct_new", f"{schema}.pct_old"
    for t in (new_t, old_t):
        db.execute(f'CREATE TABLE {t} (id int PRIMARY KEY, "rate%" int, "rate%%" int)')
        db.execute(f"INSERT INTO {t} VALUES (1, 0, 0)")
    batch = [(str(k), orjson.dumps({"id": k, "rate%": 10 + k})) for k in (1, 2)]
    r_new = _merge(impl, dsn, new_t, batch)
    with monkeypatch.context() as m:
        m.setattr(Merger, "_typed_only", lambda merger, batch: None)  # the full path, as before b6ff02b
        r_old = _merge(impl, dsn, old_t, batch)
    assert (r_new.dead, r_new.unchanged) == (r_old.dead, r_old.unchanged)
    old_rows = db.execute(f'SELECT id, "rate%", "rate%%" FROM {old_t} ORDER BY id').fetchall()
    new_rows = db.execute(f'SELECT id, "rate%", "rate%%" FROM {new_t} ORDER BY id').fetchall()
    assert old_rows == [(1, 11, 0), (2, 12, None)]
    assert new_rows == old_rows


def test_a_column_with_a_percent_is_merged_the_typed_only_way(
    impl: str, db: psycopg.Connection[Any], dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A single "rate%" column: the typed-only statement must not be refused
    (it names "rate%%", which does not exist: UndefinedColumn, rolled back,
    and every such batch is COPYed twice)."""
    table = f"{schema}.pct_one"
    db.execute(f'CREATE TABLE {table} (id int PRIMARY KEY, "rate%" int)')
    refused: list[str] = []
    real = Merger._typed_only

    def spy(merger: Merger, batch: Any) -> Any:
        run = real(merger, batch)
        if run is None:
            refused.append("refused")
        return run

    monkeypatch.setattr(Merger, "_typed_only", spy)
    result = _merge(impl, dsn, table, [(str(k), orjson.dumps({"id": k, "rate%": k})) for k in (1, 2, 3)])
    assert not result.dead
    assert db.execute(f'SELECT id, "rate%" FROM {table} ORDER BY id').fetchall() == [(1, 1), (2, 2), (3, 3)]
    assert not refused, "the common batch of a table with a % in a column's name never merges the typed-only way"
