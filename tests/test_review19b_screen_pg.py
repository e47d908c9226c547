"""Second review of the screen (issue 19) on PostgreSQL (fixed since): each test is a
defect, where the screen dead-lettered a record PostgreSQL accepts, or
where a table the screen reads wrongly can no longer be drained (or is no
longer screened). The correct behaviour, in every test: only the records
the server refuses are dead-lettered, every other record lands."""

from __future__ import annotations

from typing import Any

from syncwd_fast import FastDrainer, Syncwd, Table

from .helpers import dead_of, rows


def drain(r: Any, dsn: str, prefix: str, table: Table, records: list[dict[str, Any]], batch: int = 1000) -> Any:
    Syncwd(r, prefix=prefix).update_many(table, records)
    return FastDrainer(r, dsn, prefix=prefix, batch=batch).drain()


def test_a_check_with_a_whole_row_reference_does_not_stop_the_table(r, db, dsn, schema, prefix):
    """A CHECK that passes the whole row to a function has conkey {0}:
    load_constraints looks attnum 0 up among the columns (KeyError), so
    every drain of the table aborts (exit 3), clean records included. It
    should leave such a CHECK to the server (halving)."""
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int)")
    db.execute(
        f"CREATE FUNCTION {schema}.ok(x {schema}.p) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT x.v >= 0 $$"
    )
    db.execute(f"ALTER TABLE {schema}.p ADD CONSTRAINT whole CHECK ({schema}.ok(p))")
    t = Table(f"{schema}.p")
    report = drain(r, dsn, prefix, t, [{"id": 1, "v": 1}, {"id": 2, "v": -5}, {"id": 3, "v": 3}])
    assert report.aborted is None, report.aborted
    assert set(dead_of(r, t, prefix)) == {"2"}
    assert rows(db, t.name) == [(1, 1), (3, 3)]


def test_a_unique_value_held_by_an_inheritance_child_is_no_conflict(r, db, dsn, schema, prefix):
    """A unique index covers its own table, not the tables inheriting from
    it: PostgreSQL inserts email 'x@y' into p although a child row holds it.
    The screen looks for the value in p and its children (FROM p, not FROM
    ONLY p) and dead-letters record 1."""
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, email text UNIQUE, v int CHECK (v >= 0))")
    db.execute(f"CREATE TABLE {schema}.child (extra int) INHERITS ({schema}.p)")
    db.execute(f"INSERT INTO {schema}.child VALUES (50, 'x@y', 1, 0)")
    t = Table(f"{schema}.p")
    drain(
        r,
        dsn,
        prefix,
        t,
        [{"id": 1, "email": "x@y", "v": 1}, {"id": 2, "email": "b", "v": -5}, {"id": 3, "email": "c", "v": 3}],
    )
    assert set(dead_of(r, t, prefix)) == {"2"}, dead_of(r, t, prefix)
    assert db.execute(f"SELECT id, email FROM ONLY {schema}.p ORDER BY id").fetchall() == [(1, "x@y"), (3, "c")]


def test_a_foreign_key_from_text_to_char_compares_as_the_key_does(r, db, dsn, schema, prefix):
    """A text column referencing a char(5) key: the key compares with
    bpchareq (trailing spaces do not count), so 'ab ' has its parent 'ab'
    (the server takes the row alone). The screen's `r.code = x.code`
    resolves to text = text, where char's value loses its padding and 'ab'
    <> 'ab ': record 1 is dead-lettered as having no parent."""
    db.execute(f"CREATE TABLE {schema}.parent (code char(5) PRIMARY KEY)")
    db.execute(f"INSERT INTO {schema}.parent VALUES ('ab')")
    db.execute(
        f"CREATE TABLE {schema}.p (id int PRIMARY KEY, code text REFERENCES {schema}.parent, v int CHECK (v >= 0))"
    )
    db.execute(f"INSERT INTO {schema}.p VALUES (100, 'ab ', 1)")  # the server accepts the value
    db.execute(f"DELETE FROM {schema}.p")
    t = Table(f"{schema}.p")
    drain(
        r,
        dsn,
        prefix,
        t,
        [{"id": 1, "code": "ab ", "v": 1}, {"id": 2, "code": "ab", "v": -5}, {"id": 3, "code": "ab", "v": 3}],
    )
    assert set(dead_of(r, t, prefix)) == {"2"}, dead_of(r, t, prefix)
    assert rows(db, t.name) == [(1, "ab ", 1), (3, "ab", 3)]


def test_a_deferred_foreign_key_is_judged_at_commit_not_by_the_screen(r, db, dsn, schema, prefix):
    """A DEFERRABLE INITIALLY DEFERRED key is checked at the end of the
    transaction, after an AFTER trigger made the parent row: PostgreSQL
    takes records 1 and 3. The screen (run because record 2 breaks a CHECK)
    looks for the parents before the trigger ran and dead-letters 1 and 3."""
    db.execute(f"CREATE TABLE {schema}.parent (id int PRIMARY KEY)")
    db.execute(
        f"CREATE TABLE {schema}.p (id int PRIMARY KEY,"
        f" ref int REFERENCES {schema}.parent DEFERRABLE INITIALLY DEFERRED, v int CHECK (v >= 0))"
    )
    db.execute(
        f"CREATE FUNCTION {schema}.mk() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN INSERT INTO {schema}.parent VALUES (NEW.ref) ON CONFLICT DO NOTHING; RETURN NULL; END $$"
    )
    db.execute(f"CREATE TRIGGER mk AFTER INSERT OR UPDATE ON {schema}.p FOR EACH ROW EXECUTE FUNCTION {schema}.mk()")
    t = Table(f"{schema}.p")
    drain(r, dsn, prefix, t, [{"id": 1, "ref": 7, "v": 1}, {"id": 2, "ref": 8, "v": -5}, {"id": 3, "ref": 9, "v": 3}])
    assert set(dead_of(r, t, prefix)) == {"2"}, dead_of(r, t, prefix)
    assert rows(db, t.name) == [(1, 7, 1), (3, 9, 3)]


def test_a_key_only_record_of_an_existing_row_is_not_judged_by_a_check(r, db, dsn, schema, prefix):
    """A group of key columns only, lacking a required column (name NOT
    NULL), is merged by INSERT ... WHERE NOT EXISTS: an existing row is
    neither inserted nor updated, so no CHECK is evaluated for it, and row
    -1 (older than the NOT VALID check) is accepted as unchanged. The
    screen (run because record -2 is a new row breaking the CHECK) judges
    the CHECK on record -1 too and dead-letters it."""
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, name text NOT NULL)")
    db.execute(f"INSERT INTO {schema}.p VALUES (-1, 'old'), (7, 'seven')")
    db.execute(f"ALTER TABLE {schema}.p ADD CONSTRAINT id_pos CHECK (id > 0) NOT VALID")
    t = Table(f"{schema}.p")
    drain(r, dsn, prefix, t, [{"id": -1}, {"id": -2}, {"id": 7}])
    assert set(dead_of(r, t, prefix)) == {"-2"}, dead_of(r, t, prefix)
    assert rows(db, t.name) == [(-1, "old"), (7, "seven")]


def test_a_column_named_k_does_not_turn_the_screen_off(r, db, dsn, schema, prefix):
    """The screen's statement names its own column k next to x.*, the
    record's columns by the table's names: with a column k the reference
    y.k is ambiguous (42702), the screen fails, and every bad record is
    found by halving instead (the server's message, "Failing row contains",
    is the sign). Its own names should be chosen apart from the table's
    (screen._alias, as the MariaDB screen does)."""
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, k int CHECK (k >= 0))")
    t = Table(f"{schema}.p")
    drain(r, dsn, prefix, t, [{"id": 1, "k": 1}, {"id": 2, "k": -5}, {"id": 3, "k": 3}])
    dead = dead_of(r, t, prefix)
    assert set(dead) == {"2"}
    assert "Failing row" not in dead["2"]["error"], dead["2"]["error"]  # the screen's reason, not halving's
