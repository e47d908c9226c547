"""Bad records no screen can judge (a trigger's RAISE) found one record per
subtransaction, server-side, once halving shows at least two
(sinks/postgres/one_by_one.py): the same dead letters and counts as halving
gave, in a few statements per batch instead of a few per bad record."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.sinks.postgres.decode import Decoder
from syncwd_fast.sinks.postgres.merge import _Run

from .helpers import Statements, count, dead_of, merger_for

N = 1000


def refusing(db: Any, schema: str, table: str, condition: str) -> None:
    """A BEFORE trigger on ``table`` raising for rows where ``condition``."""
    db.execute(
        f"CREATE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN IF {condition} THEN RAISE EXCEPTION 'refused %', NEW.id USING ERRCODE = 'P0001'; END IF;"
        " RETURN NEW; END $$"
    )
    db.execute(
        f"CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON {schema}.{table}"
        f" FOR EACH ROW EXECUTE FUNCTION {schema}.refuse()"
    )


def drain(r: Any, dsn: str, prefix: str, batch: int = 5000) -> Any:
    return FastDrainer(r, dsn, prefix=prefix, batch=batch).drain()


def test_many_records_a_trigger_refuses_cost_statements_per_chunk_not_per_record(
    r, db, dsn, schema, prefix, monkeypatch
):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL)")
    refusing(db, schema, "p", "NEW.v < 0")
    t = Table(f"{schema}.p")
    bad = {i for i in range(N) if i % 5 == 2}
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": -1 if i in bad else i} for i in range(N)])
    statements = Statements(monkeypatch)
    report = drain(r, dsn, prefix)
    dead = dead_of(r, t, prefix)
    assert set(dead) == {str(i) for i in bad}
    assert all(d["error"] == f"refused {rid} [SQLSTATE P0001]" for rid, d in dead.items())
    assert report.upserted == N - len(bad) and report.exit_code == 1
    assert count(db, t.name) == N - len(bad)
    assert db.execute(f"SELECT count(*) FROM {schema}.p WHERE v <> id").fetchone()[0] == 0
    # Halving took over a thousand statements here.
    assert statements.count < 80, statements.count


@pytest.mark.parametrize("columns", ["v", '"syncwd_k", "syncwd_state", "$syncwd$", "100%"'])
def test_columns_named_as_the_function_s_own_names_do_not_confuse_it(r, db, dsn, schema, prefix, columns):
    names = [c.strip('"') for c in columns.split(", ")]
    db.execute(
        f"CREATE TABLE {schema}.p (id int PRIMARY KEY, {', '.join(f'{c} int NOT NULL' for c in columns.split(', '))})"
    )
    first = columns.split(", ")[0]
    refusing(db, schema, "p", f"NEW.{first} < 0")
    t = Table(f"{schema}.p")
    bad = {i for i in range(100) if i % 5 == 2}
    Syncwd(r, prefix=prefix).update_many(
        t, [{"id": i, **{c: -1 if i in bad else i for c in names}} for i in range(100)]
    )
    report = drain(r, dsn, prefix)
    assert set(dead_of(r, t, prefix)) == {str(i) for i in bad}, report.to_dict()
    assert report.upserted == 80
    assert db.execute(f"SELECT count(*) FROM {schema}.p WHERE {first} = id").fetchone()[0] == 80


@pytest.mark.parametrize("one_by_one", [True, False], ids=["one_by_one", "halving"])
def test_records_referencing_records_of_their_batch_land_unless_their_reference_cannot(
    r, db, dsn, schema, prefix, monkeypatch, one_by_one
):
    """A table's reference to itself, one record at a time: a record whose
    reference comes later in the batch (a chain, here 60 long and staged
    child first) or that references a record referencing it (a cycle)
    fails alone, and all land together in one statement; a record whose
    reference leads only to a missing row or to a refused record is refused
    (by PostgreSQL too), and so is each record of a chain ending there.
    Halving alone splits them as well: they are settled the same way."""
    monkeypatch.setattr(_Run, "ONE_BY_ONE", one_by_one)
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL, mate int REFERENCES {schema}.p (id))")
    refusing(db, schema, "p", "NEW.v < 0")
    t = Table(f"{schema}.p")
    mates: dict[int, int | None] = {}
    for i in range(0, 60):  # a chain: i -> i + 1 -> ... -> 59 -> 1000 (a good record)
        mates[i] = i + 1 if i < 59 else 1000
    mates[1000] = None
    for i in range(100, 140, 2):  # cycles: 100 <-> 101, ...
        mates[i], mates[i + 1] = i + 1, i
    mates[200], mates[201], mates[202] = 201, 202, 999  # a chain ending at a missing row
    mates[300], mates[301] = 301, None  # 301 refused by the trigger, so 300 too
    refused = {301, 7000, 7001, 7002, 7003}
    for i in (7000, 7001, 7002, 7003):
        mates[i] = None
    bad = {200, 201, 202, 300} | refused
    records = [{"id": i, "v": -1 if i in refused else i, "mate": m} for i, m in mates.items()]
    Syncwd(r, prefix=prefix).update_many(t, records)
    report = drain(r, dsn, prefix)
    dead = dead_of(r, t, prefix)
    assert set(dead) == {str(i) for i in bad}, sorted((int(k), v["error"][:60]) for k, v in dead.items())
    assert all("p_mate_fkey" in dead[str(i)]["error"] for i in bad - refused)
    assert report.upserted == len(mates) - len(bad)
    assert count(db, t.name) == len(mates) - len(bad)


def test_records_the_version_guard_keeps_out_are_counted_skipped(r, db, dsn, schema, prefix):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL, version int)")
    db.execute(f"INSERT INTO {schema}.p SELECT i, 0, 100 FROM generate_series(0, 99) i")
    refusing(db, schema, "p", "NEW.v < 0")
    t = Table(f"{schema}.p", version_column="version")
    # 0..99 exist at version 100: those written at version 50 are kept out,
    # those at 200 replace the row; 100..199 are new. The BEFORE INSERT
    # trigger sees every proposed row, kept out or not (as under halving).
    records = [
        {"id": i, "v": -1 if i % 5 == 1 else i, "version": 50 if i % 2 == 0 and i < 100 else 200} for i in range(200)
    ]
    Syncwd(r, prefix=prefix).update_many(t, records)
    report = drain(r, dsn, prefix)
    bad = {i for i in range(200) if i % 5 == 1}
    kept_out = {i for i in range(100) if i % 2 == 0} - bad
    dead = dead_of(r, t, prefix)
    assert set(dead) == {str(i) for i in bad}
    assert report.skipped == len(kept_out), report.to_dict()
    assert report.upserted == 200 - len(kept_out) - len(bad), report.to_dict()
    got = dict(db.execute(f"SELECT id, v FROM {schema}.p").fetchall())
    assert all(got[i] == 0 for i in kept_out)
    assert all(got[i] == i for i in range(200) if i not in kept_out and i not in bad)


def test_records_of_key_columns_only_whose_row_exists_are_counted_skipped(r, db, dsn, schema, prefix):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)")
    db.execute(f"INSERT INTO {schema}.p SELECT i, 7 FROM generate_series(0, 99, 2) i")
    refusing(db, schema, "p", "NEW.id % 5 = 3")
    t = Table(f"{schema}.p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i} for i in range(100)])
    report = drain(r, dsn, prefix)
    # The BEFORE INSERT trigger sees the proposed row before the conflict.
    refused = {i for i in range(100) if i % 5 == 3}
    assert set(dead_of(r, t, prefix)) == {str(i) for i in refused}
    existing = {i for i in range(0, 100, 2)}
    assert report.skipped == len(existing - refused), report.to_dict()
    assert report.upserted == 50 - len(refused - existing), report.to_dict()
    assert count(db, t.name) == 100 - len(refused - existing)


def batch(decoder: Decoder, values: dict[int, int]) -> Any:
    return decoder.decode([str(i) for i in values], [b'{"id": %d, "v": %d}' % (i, v) for i, v in values.items()])


def test_a_group_found_bad_one_by_one_starts_so_until_a_batch_is_clean(dsn, db, schema, monkeypatch):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL)")
    refusing(db, schema, "p", "NEW.v < 0")
    conn, decoder, merger = merger_for(dsn, f"{schema}.p")
    try:
        first = merger.merge(batch(decoder, {i: -1 if i % 3 == 0 else i for i in range(300)}))
        assert len(first.dead) == 100 and len(first.upserted) == 200
        assert merger.piecemeal
        statements = Statements(monkeypatch)
        second = merger.merge(batch(decoder, {i: -1 if i % 3 == 1 else i for i in range(300, 600)}))
        assert {int(rid) for rid, _ in second.dead} == {i for i in range(300, 600) if i % 3 == 1}
        # No statement over the group ran to its failure first: the COPY, the
        # lock, the index, the function, the call, the end.
        assert statements.count <= 12, statements.count
        third = merger.merge(batch(decoder, {i: i for i in range(600, 900)}))
        assert not third.dead and len(third.upserted) == 300
        assert not merger.piecemeal
    finally:
        conn.close()
    assert count(db, f"{schema}.p") == 200 + 200 + 300


def test_a_lock_wait_inside_one_by_one_is_a_fault_not_a_bad_record(dsn, db, base_dsn, schema):
    """A lock timeout is no record's fault: the batch fails whole (to be
    retried), and no record is dead-lettered for it."""
    db.execute(f"CREATE TABLE {schema}.parent (id int PRIMARY KEY)")
    db.execute(f"INSERT INTO {schema}.parent SELECT generate_series(0, 9)")
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL, ref int REFERENCES {schema}.parent)")
    refusing(db, schema, "p", "NEW.v < 0")
    conn, decoder, merger = merger_for(dsn, f"{schema}.p", lock_timeout_s=0.5)
    holder = psycopg.connect(base_dsn)
    try:
        # The foreign key's check of parent 7 waits for this lock.
        holder.execute(f"SELECT * FROM {schema}.parent WHERE id = 7 FOR UPDATE")
        decoded = decoder.decode(
            [str(i) for i in range(100)],
            [b'{"id": %d, "v": %d, "ref": %d}' % (i, -1 if i % 4 == 1 else i, i % 10) for i in range(100)],
        )
        with pytest.raises(psycopg.errors.LockNotAvailable):
            merger.merge(decoded)
    finally:
        holder.close()
        conn.close()
    assert count(db, f"{schema}.p") == 0


def test_an_error_every_record_meets_is_nobody_s_fault(r, db, dsn, schema, prefix):
    """A trigger calling a function that is gone fails every record alike:
    the batch waits in Redis (exit 3), none is dead-lettered."""
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL)")
    db.execute(
        f"CREATE FUNCTION {schema}.call_gone() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN PERFORM {schema}.gone(NEW.v); RETURN NEW; END $$"
    )
    db.execute(f"CREATE TRIGGER g BEFORE INSERT ON {schema}.p FOR EACH ROW EXECUTE FUNCTION {schema}.call_gone()")
    t = Table(f"{schema}.p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i} for i in range(100)])
    report = FastDrainer(r, dsn, prefix=prefix, retries=0).drain()
    assert report.exit_code == 3
    assert dead_of(r, t, prefix) == {}
    assert count(db, t.name) == 0
