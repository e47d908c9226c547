"""Review of the screen (issue 19), against real servers: each test is a
defect found, where the screen dead-lettered a record the server accepts.
A screen must flag only what the server refuses."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from syncwd_fast import FastDrainer, Syncwd, Table

from .helpers import dead_of, rows


def drain(r: Any, dsn: str, prefix: str, table: Table, records: list[dict[str, Any]], batch: int = 1000) -> Any:
    Syncwd(r, prefix=prefix).update_many(table, records)
    return FastDrainer(r, dsn, prefix=prefix, batch=batch).drain()


def test_a_foreign_key_to_a_partitioned_table_is_judged_by_the_table_not_each_partition(r, db, dsn, schema, prefix):
    """PostgreSQL copies the key for each partition of the referenced table
    (pg_constraint rows with a parent): the screen took each copy for a key
    of its own, wanted the value in every partition, and kept screening
    every later batch of the group."""
    db.execute(f"CREATE TABLE {schema}.parted (id int PRIMARY KEY) PARTITION BY RANGE (id)")
    db.execute(f"CREATE TABLE {schema}.parted_a PARTITION OF {schema}.parted FOR VALUES FROM (0) TO (100)")
    db.execute(f"CREATE TABLE {schema}.parted_b PARTITION OF {schema}.parted FOR VALUES FROM (100) TO (200)")
    db.execute(f"INSERT INTO {schema}.parted VALUES (5), (150)")
    db.execute(
        f"CREATE TABLE {schema}.p (id int PRIMARY KEY, ref int REFERENCES {schema}.parted, v int CHECK (v >= 0))"
    )
    t = Table(f"{schema}.p")
    records = [{"id": 1, "ref": 5, "v": -1}] + [{"id": i, "ref": 150 if i % 2 else 5, "v": i} for i in range(2, 21)]
    records.append({"id": 21, "ref": 77, "v": 1})  # no such parent
    report = drain(r, dsn, prefix, t, records, batch=5)
    assert set(dead_of(r, t, prefix)) == {"1", "21"}, dead_of(r, t, prefix)
    assert report.upserted == 19


def _collation(db: Any, name: str) -> None:
    if not db.execute("SELECT FROM pg_collation WHERE collname = %s", (name,)).fetchall():
        pytest.skip(f"no collation {name} (PostgreSQL built without ICU)")


def test_a_check_over_a_column_of_its_own_collation_is_left_to_the_server(r, db, dsn, schema, prefix):
    """The stage's values carry the default collation: 'B' >= 'a' is false
    in C, true in the column's ICU collation, which the server uses."""
    _collation(db, "en-x-icu")
    db.execute(f"""CREATE TABLE {schema}.p (id int PRIMARY KEY, code text COLLATE "en-x-icu" CHECK (code >= 'a'))""")
    t = Table(f"{schema}.p")
    drain(r, dsn, prefix, t, [{"id": 1, "code": "B"}, {"id": 2, "code": "0"}, {"id": 3, "code": "b"}])
    assert set(dead_of(r, t, prefix)) == {"2"}
    assert rows(db, t.name) == [(1, "B"), (3, "b")]


def test_a_unique_index_with_a_collation_of_its_own_is_left_to_the_server(r, db, dsn, schema, prefix):
    _collation(db, "und-x-icu")
    db.execute(f"CREATE COLLATION {schema}.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, name text COLLATE {schema}.ci)")
    db.execute(f'CREATE UNIQUE INDEX p_name_c ON {schema}.p (name COLLATE "C")')
    db.execute(f"INSERT INTO {schema}.p VALUES (10, 'abc')")
    t = Table(f"{schema}.p")
    drain(r, dsn, prefix, t, [{"id": 1, "name": "ABC"}, {"id": 2, "name": "abc"}, {"id": 3, "name": "x"}])
    assert set(dead_of(r, t, prefix)) == {"2"}
    assert rows(db, t.name) == [(1, "ABC"), (3, "x"), (10, "abc")]


def test_a_before_trigger_on_a_partition_turns_the_screen_off(r, db, dsn, schema, prefix):
    db.execute(
        f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int CONSTRAINT v_pos CHECK (v >= 0)) PARTITION BY RANGE (id)"
    )
    db.execute(f"CREATE TABLE {schema}.p1 PARTITION OF {schema}.p FOR VALUES FROM (0) TO (1000)")
    db.execute(
        f"CREATE FUNCTION {schema}.fix() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN IF NEW.v = -1 THEN NEW.v := 1; END IF; RETURN NEW; END $$"
    )
    db.execute(
        f"CREATE TRIGGER fix BEFORE INSERT OR UPDATE ON {schema}.p1 FOR EACH ROW EXECUTE FUNCTION {schema}.fix()"
    )
    t = Table(f"{schema}.p")
    drain(r, dsn, prefix, t, [{"id": 1, "v": -1}, {"id": 2, "v": -5}, {"id": 3, "v": 3}])
    assert set(dead_of(r, t, prefix)) == {"2"}
    assert rows(db, t.name) == [(1, 1), (3, 3)]


def test_row_security_on_the_referenced_table_does_not_hide_parents_from_the_screen(r, db, base_dsn, schema, prefix):
    """A foreign key's check ignores row security; the screen's anti-join,
    run as the drainer, does not see the rows a policy hides from it."""
    role = "syncwd_" + uuid.uuid4().hex[:10]
    db.execute(f"CREATE ROLE {role} LOGIN")
    try:
        db.execute(f"CREATE TABLE {schema}.parent (id int PRIMARY KEY, tenant text)")
        db.execute(f"INSERT INTO {schema}.parent VALUES (1, 'a'), (2, 'b')")
        db.execute(f"ALTER TABLE {schema}.parent ENABLE ROW LEVEL SECURITY")
        db.execute(f"CREATE POLICY only_a ON {schema}.parent FOR SELECT USING (tenant = 'a')")
        db.execute(
            f"CREATE TABLE {schema}.p (id int PRIMARY KEY, ref int REFERENCES {schema}.parent, v int CHECK (v >= 0))"
        )
        db.execute(f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}")
        db.execute(f"GRANT SELECT, REFERENCES ON {schema}.parent TO {role}")
        db.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.p TO {role}")
        dsn = psycopg.conninfo.make_conninfo(base_dsn, user=role)
        t = Table(f"{schema}.p")
        drain(
            r, dsn, prefix, t, [{"id": 1, "ref": 2, "v": 1}, {"id": 2, "ref": 1, "v": -5}, {"id": 3, "ref": 1, "v": 3}]
        )
        assert set(dead_of(r, t, prefix)) == {"2"}
        assert rows(db, t.name) == [(1, 2, 1), (3, 1, 3)]
    finally:
        db.execute(f"DROP OWNED BY {role}")
        db.execute(f"DROP ROLE {role}")


def test_mariadb_a_wide_stage_turns_the_screen_off(r, m, prefix):
    """A target near the row size limit gets a stage of LONGTEXT strings,
    which keep a CHAR's trailing spaces: the server checks 'ab', the stage
    held 'ab  '."""
    m.sql(
        "CREATE TABLE p (id int NOT NULL PRIMARY KEY, code CHAR(5) CHARACTER SET latin1 NOT NULL,"
        " big VARCHAR(65515) CHARACTER SET latin1 NOT NULL DEFAULT '', v int NOT NULL DEFAULT 0,"
        " CONSTRAINT code_ok CHECK (code NOT LIKE '% '), CONSTRAINT v_pos CHECK (v >= 0)) ENGINE=InnoDB"
    )
    t = Table(f"{m.dsn.rsplit('/', 1)[1]}.p")
    drain(
        r,
        m.dsn,
        prefix,
        t,
        [{"id": 1, "code": "ab  ", "v": 1}, {"id": 2, "code": "cd", "v": -5}, {"id": 3, "code": "ef", "v": 3}],
    )
    assert set(dead_of(r, t, prefix)) == {"2"}
    assert m.sql("SELECT id, code, v FROM p ORDER BY id") == ((1, "ab", 1), (3, "ef", 3))


def test_mariadb_a_check_clause_may_hold_any_text(r, m, prefix):
    m.sql(
        "CREATE TABLE p (id int PRIMARY KEY, note varchar(20), v int,"
        " CONSTRAINT note_ok CHECK (note <> '{idx}'), CONSTRAINT v_pos CHECK (v >= 0))"
    )
    t = Table(f"{m.dsn.rsplit('/', 1)[1]}.p")
    drain(
        r,
        m.dsn,
        prefix,
        t,
        [{"id": 1, "note": "0,1,2", "v": 1}, {"id": 2, "note": "x", "v": -5}, {"id": 3, "note": "y", "v": 3}],
    )
    assert set(dead_of(r, t, prefix)) == {"2"}
    assert m.sql("SELECT * FROM p ORDER BY id") == ((1, "0,1,2", 1), (3, "y", 3))


@pytest.mark.parametrize("check", ["", ' CHECK ("100%" >= 0)'], ids=["plain", "screened"])
def test_a_column_whose_name_holds_a_percent_sign_is_merged_and_screened(r, db, dsn, schema, prefix, check):
    """psycopg reads every % of a statement run with parameters as a
    placeholder: a column named "100%" aborted every drain of its table
    (exit 3, the partition stranded) before its name was escaped."""
    db.execute(f'CREATE TABLE {schema}.p (id int PRIMARY KEY, "100%" int{check}, "a%%b" text)')
    t = Table(f"{schema}.p")
    records = [{"id": i, "100%": -i if i % 5 == 1 else i, "a%%b": f"{i}%"} for i in range(50)]
    report = drain(r, dsn, prefix, t, records)
    bad = {str(i) for i in range(50) if i % 5 == 1} if check else set()
    dead = dead_of(r, t, prefix)
    assert set(dead) == bad, report.to_dict()
    assert all('"p_100%_check"' in d["error"] for d in dead.values())
    assert report.upserted == 50 - len(bad)
    expected = [(i, -i if i % 5 == 1 else i, f"{i}%") for i in range(50) if str(i) not in bad]
    assert rows(db, f"{schema}.p", "id") == expected
