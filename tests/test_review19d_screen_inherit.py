"""Review 19d (fixed since: ONLY only where a unique index is looked up):
the screen read a plain table ONLY (screen.py ``target``, schema.py
``Constraints.only``), but a group that only inserts missing rows
(key columns only, lacking a required column: ``new_only``) is merged by
``INSERT ... WHERE NOT EXISTS (SELECT FROM <table> ...)`` (merge.py
``missing_only``), which sees the rows of tables inheriting from it too.
A record whose row lives in a child table is no new row for the merge
(nothing is inserted, no constraint runs: PostgreSQL accepts it), but the
screen, joining ``ONLY`` the table, takes it for one and dead-letters it
for a foreign key no statement checks.

Correct behaviour: the screen flags only what PostgreSQL refuses; it must
tell new rows as the merge statements do (same relation, ONLY or not)."""

from __future__ import annotations

from typing import Any

from .helpers import merge_records


def _tables(db: Any, schema: str) -> None:
    db.execute(f"CREATE TABLE {schema}.o (id int PRIMARY KEY)")
    db.execute(f"INSERT INTO {schema}.o VALUES (1)")
    # Foreign keys are not inherited: the child's row 5 references nothing.
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY REFERENCES {schema}.o (id), v int NOT NULL)")
    db.execute(f"CREATE TABLE {schema}.c () INHERITS ({schema}.p)")
    db.execute(f"INSERT INTO {schema}.c VALUES (5, 0)")


def test_postgres_accepts_the_record_alone(db, dsn, schema):
    """The baseline (passes): merged alone, record 5 is no new row, nothing fails."""
    _tables(db, schema)
    result = merge_records(dsn, f"{schema}.p", [{"id": 5}])
    assert not result.dead, result.dead


def test_a_key_only_record_of_a_row_in_a_child_table_is_not_screened_as_new(db, dsn, schema):
    """Beside a record the server refuses (7: a new row, no such o.id, and
    v missing), the failed statement is screened and 5 is dead-lettered
    too, with a foreign-key reason PostgreSQL never gave."""
    _tables(db, schema)
    result = merge_records(dsn, f"{schema}.p", [{"id": 5}, {"id": 7}])
    assert {rid for rid, _ in result.dead} == {"7"}, result.dead
    assert db.execute(f"SELECT count(*) FROM {schema}.p").fetchone()[0] == 1
