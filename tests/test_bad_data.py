"""Bad data at scale: many records of one batch break the table's
constraints. They are found set-wise (a screen over the stage, a few
statements per batch, not a halving per bad record), dead-lettered with a
reason naming the constraint, and the rest lands. Each test runs against
PostgreSQL and MariaDB (tests/targets.py)."""

from __future__ import annotations

from typing import Any

import pytest

from syncwd_fast import FastDrainer, Syncwd, Table

from .helpers import Statements, count, dead_of
from .targets import db, dsn, schema, target  # noqa: F401

N = 1000
# Statements of a drain of one batch: connecting, reading the schema, the
# stage, the merge, the screen (halving would take hundreds)
BOUND = 60


def drain(r: Any, dsn: str, prefix: str, batch: int = 5000) -> Any:
    return FastDrainer(r, dsn, prefix=prefix, batch=batch).drain()


def parent(db: Any, schema: str, n: int = 10) -> None:
    db.execute(f"CREATE TABLE {schema}.parent (id int PRIMARY KEY)")
    for i in range(n):
        db.execute(f"INSERT INTO {schema}.parent VALUES ({i})")


@pytest.mark.parametrize("batch", [5000, 100])
def test_many_check_violations_in_one_batch_are_dead_lettered_by_name(r, db, dsn, schema, prefix, monkeypatch, batch):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL, CONSTRAINT v_positive CHECK (v >= 0))")
    t = Table(f"{schema}.p")
    bad = {i for i in range(N) if i % 5 == 2}  # 20%
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": -i if i in bad else i} for i in range(N)])
    statements = Statements(monkeypatch)
    report = drain(r, dsn, prefix, batch)
    assert report.upserted == N - len(bad) and report.dead_lettered == len(bad), report.to_dict()
    dead = dead_of(r, t, prefix)
    assert set(dead) == {str(i) for i in bad}
    assert all("v_positive" in d["error"] for d in dead.values()), next(iter(dead.values()))
    assert count(db, t.name) == N - len(bad)
    # Halving takes a few statements per bad record (over 400 here).
    assert statements.count < BOUND + 10 * (N // batch), statements.count


def test_many_foreign_key_violations_are_dead_lettered_by_name(r, db, dsn, schema, prefix, monkeypatch):
    parent(db, schema)
    db.execute(
        f"CREATE TABLE {schema}.p (id int PRIMARY KEY, ref int,"
        f" CONSTRAINT p_parent FOREIGN KEY (ref) REFERENCES {schema}.parent (id))"
    )
    t = Table(f"{schema}.p")
    bad = {i for i in range(N) if i % 5 == 0}
    records = [{"id": i, "ref": 100 + i if i in bad else i % 10} for i in range(N)]
    records[1]["ref"] = None  # a NULL reference is no violation
    Syncwd(r, prefix=prefix).update_many(t, records)
    statements = Statements(monkeypatch)
    report = drain(r, dsn, prefix)
    assert report.upserted == N - len(bad) and report.dead_lettered == len(bad), report.to_dict()
    dead = dead_of(r, t, prefix)
    assert set(dead) == {str(i) for i in bad}
    assert all("p_parent" in d["error"] for d in dead.values())
    assert "105" in dead["5"]["error"], dead["5"]["error"]  # the missing key is named
    assert statements.count < BOUND, statements.count


def test_many_records_taking_another_rows_unique_value_are_dead_lettered_by_name(
    r, db, dsn, schema, prefix, monkeypatch
):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, email varchar(64), CONSTRAINT p_email UNIQUE (email))")
    db.execute(f"INSERT INTO {schema}.p VALUES (-1, 'taken')")
    t = Table(f"{schema}.p")
    bad = {i for i in range(N) if i % 10 == 3}
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "email": "taken" if i in bad else f"e{i}"} for i in range(N)])
    statements = Statements(monkeypatch)
    report = drain(r, dsn, prefix)
    assert report.upserted == N - len(bad) and report.dead_lettered == len(bad), report.to_dict()
    dead = dead_of(r, t, prefix)
    assert set(dead) == {str(i) for i in bad}
    assert all("p_email" in d["error"] for d in dead.values())
    assert count(db, t.name) == N - len(bad) + 1
    assert statements.count < BOUND, statements.count


def test_each_record_is_blamed_on_the_constraint_it_breaks(r, db, dsn, schema, prefix):
    parent(db, schema)
    db.execute(
        f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL, ref int, email varchar(64),"
        f" CONSTRAINT v_positive CHECK (v >= 0), CONSTRAINT p_email UNIQUE (email),"
        f" CONSTRAINT p_parent FOREIGN KEY (ref) REFERENCES {schema}.parent (id))"
    )
    db.execute(f"INSERT INTO {schema}.p VALUES (-1, 0, NULL, 'taken')")
    t = Table(f"{schema}.p")
    records = []
    expect: dict[str, str] = {}
    for i in range(N):
        record = {"id": i, "v": i, "ref": i % 10, "email": f"e{i}"}
        if i % 7 == 1:
            record["v"], expect[str(i)] = -1, "v_positive"
        elif i % 7 == 2:
            record["ref"], expect[str(i)] = 99, "p_parent"
        elif i % 7 == 3:
            record["email"], expect[str(i)] = "taken", "p_email"
        records.append(record)
    # A record carrying only some columns: its group's screen judges what it carries.
    records.append({"id": N, "v": -5})
    expect[str(N)] = "v_positive"
    Syncwd(r, prefix=prefix).update_many(t, records)
    report = drain(r, dsn, prefix)
    dead = dead_of(r, t, prefix)
    assert {rid: name for rid, name in expect.items() if name not in dead.get(rid, {}).get("error", "")} == {}
    assert set(dead) == set(expect)
    assert report.upserted == N + 1 - len(expect)


def test_a_record_the_version_guard_keeps_out_is_not_blamed_for_its_value(r, db, dsn, schema, prefix):
    """A group merged by UPDATE (its records lack a NOT NULL column a new
    row needs) under a version guard: a record older than its row is kept
    out, so its bad value breaks nothing; the screen must not dead-letter it."""
    db.execute(
        f"CREATE TABLE {schema}.p (id int PRIMARY KEY, name varchar(20) NOT NULL, v int NOT NULL, ver int,"
        " CONSTRAINT v_positive CHECK (v >= 0))"
    )
    for i in range(100):
        db.execute(f"INSERT INTO {schema}.p VALUES ({i}, 'n{i}', {i}, 10)")
    t = Table(f"{schema}.p", version_column="ver")
    records = []
    for i in range(100):
        if i % 4 == 0:
            records.append({"id": i, "v": -1, "ver": 5})  # older than the row, and bad: kept out
        elif i % 4 == 1:
            records.append({"id": i, "v": -1, "ver": 20})  # newer and bad: refused
        else:
            records.append({"id": i, "v": i + 1000, "ver": 20})
    Syncwd(r, prefix=prefix).update_many(t, records)
    report = drain(r, dsn, prefix)
    dead = dead_of(r, t, prefix)
    assert set(dead) == {str(i) for i in range(100) if i % 4 == 1}
    assert report.skipped == 25 and report.upserted == 50, report.to_dict()
    assert db.execute(f"SELECT count(*) FROM {schema}.p WHERE v = -1").fetchone()[0] == 0


def test_a_before_trigger_leaves_the_finding_to_halving(r, db, dsn, schema, prefix, target):
    """A BEFORE trigger may change a row after any screen looked at it: here
    it mends negative values, so no record may be dead-lettered for them."""
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL, CONSTRAINT v_positive CHECK (v >= 0))")
    if target.kind == "postgres":
        db.execute(
            f"CREATE FUNCTION {schema}.mend() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN IF NEW.v < 0 AND NEW.v > -100 THEN NEW.v := -NEW.v; END IF; RETURN NEW; END $$"
        )
        db.execute(
            f"CREATE TRIGGER mend BEFORE INSERT OR UPDATE ON {schema}.p FOR EACH ROW EXECUTE FUNCTION {schema}.mend()"
        )
    else:
        db.execute(
            f"CREATE TRIGGER {schema}.mend BEFORE INSERT ON {schema}.p FOR EACH ROW"
            " SET NEW.v = IF(NEW.v < 0 AND NEW.v > -100, -NEW.v, NEW.v)"
        )
    t = Table(f"{schema}.p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": -i if i % 3 else -1000 - i} for i in range(60)])
    report = drain(r, dsn, prefix)
    dead = dead_of(r, t, prefix)
    assert set(dead) == {str(i) for i in range(60) if i % 3 == 0}
    assert all("v_positive" in d["error"] for d in dead.values())
    assert report.upserted == 40


@pytest.mark.postgres_only
@pytest.mark.parametrize("check", ["", ", CONSTRAINT v_positive CHECK (v >= 0)"], ids=["plain", "check"])
def test_many_values_that_do_not_convert_are_found_set_wise(r, db, dsn, schema, prefix, monkeypatch, check):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int, d date{check})")
    t = Table(f"{schema}.p")
    records = []
    for i in range(N):
        record: dict[str, Any] = {"id": i, "v": i, "d": "2026-01-02"}
        if i % 10 == 1:
            record["v"] = "abc"
        elif i % 10 == 2:
            record["d"] = "2026-02-30"
        elif i % 10 == 3 and check:
            record["v"] = -3
        records.append(record)
    Syncwd(r, prefix=prefix).update_many(t, records)
    statements = Statements(monkeypatch)
    report = drain(r, dsn, prefix)
    dead = dead_of(r, t, prefix)
    assert set(dead) == {str(i) for i in range(N) if i % 10 in ((1, 2, 3) if check else (1, 2))}
    assert 'column "v": invalid input syntax for type integer: "abc"' in dead["1"]["error"]
    assert 'column "d"' in dead["2"]["error"] and "out of range" in dead["2"]["error"]
    assert not check or "v_positive" in dead["3"]["error"]
    assert report.upserted == N - len(dead)
    assert statements.count < BOUND, statements.count
