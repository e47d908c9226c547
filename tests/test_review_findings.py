"""Defects a review against real servers found, each injected for real:
errors outside the usual SQLSTATE classes, deferred constraints, identity
columns, domain defaults, pydantic datetime keys, purged tombstones, two
spellings among other bad rows, ids that are not UTF-8, a registry restored
for one named table, `status --json` during a run."""

from __future__ import annotations

import datetime as dt
import subprocess

import orjson
import pydantic

from syncwd_fast import FastDrainer, Syncwd, Table, scripts
from syncwd_fast.deadletter import purge_dead, retry_dead
from syncwd_fast.keys import registry_key

from .helpers import cli, count, dead_entries, drain_command, last_json, rows, wait_for


def drain(r, dsn, prefix, **kw):
    return FastDrainer(r, dsn, prefix=prefix, **kw).drain()


def test_errors_of_any_class_are_pinned_on_their_records(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.parent (id int PRIMARY KEY)")
    db.execute(f"INSERT INTO {schema}.parent VALUES (1)")
    db.execute(
        f"CREATE TABLE {schema}.c (id int PRIMARY KEY, rel regclass, q tsquery, tag text,"
        f" pid int REFERENCES {schema}.parent DEFERRABLE INITIALLY DEFERRED)"
    )
    db.execute(
        f"CREATE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.tag = 'refuse' THEN RAISE EXCEPTION 'refused by a rule' USING ERRCODE = '45000'; END IF;"
        " RETURN NEW; END $$"
    )
    db.execute(
        f"CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON {schema}.c FOR EACH ROW EXECUTE FUNCTION {schema}.refuse()"
    )
    t = Table(f"{schema}.c")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "rel": "pg_class", "q": "a & b", "tag": "ok", "pid": 1} for i in range(100)])
    sw.update(t, {"id": 200, "rel": "no_such_relation"})  # 42P01 from a value
    sw.update(t, {"id": 201, "q": "a & & b"})  # 42601 from a value
    sw.update(t, {"id": 202, "tag": "refuse"})  # a trigger's own code
    sw.update(t, {"id": 203, "pid": 99})  # a deferred foreign key, checked at once
    report = drain(r, dsn, prefix)
    assert report.aborted is None
    assert (report.upserted, report.dead_lettered, report.exit_code) == (100, 4, 1)
    dead = dead_entries(r, t.keys(0, prefix))
    assert "SQLSTATE 42P01" in dead["200"]["error"] and "SQLSTATE 42601" in dead["201"]["error"]
    assert "refused by a rule [SQLSTATE 45000]" in dead["202"]["error"]
    assert "SQLSTATE 23503" in dead["203"]["error"]
    assert count(db, t.name) == 100


def test_identity_columns(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY, seq bigint GENERATED ALWAYS AS IDENTITY, v int)")
    db.execute(f"CREATE TABLE {schema}.k (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int)")
    a, k = Table(f"{schema}.a"), Table(f"{schema}.k")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(a, [{"id": 1, "seq": 77, "v": 1}, {"id": 2, "v": 2}])  # the database numbers seq
    sw.update_many(k, [{"id": 10, "v": 1}, {"id": 11, "v": 2}])  # the key is the record's
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.dead_lettered, report.exit_code) == (4, 0, 0)
    assert [(row[0], row[2]) for row in rows(db, a.name)] == [(1, 1), (2, 2)]
    assert rows(db, k.name) == [(10, 1), (11, 2)]
    sw.update(k, {"id": 10, "v": 5})
    drain(r, dsn, prefix)
    assert rows(db, k.name)[0] == (10, 5)


def test_a_domain_default_makes_a_column_optional(r, db, dsn, prefix, schema):
    db.execute(f"CREATE DOMAIN {schema}.label AS text NOT NULL DEFAULT 'unnamed'")
    db.execute(f"CREATE DOMAIN {schema}.short AS varchar(3) CHECK (VALUE <> 'no')")
    db.execute(f"CREATE DOMAIN {schema}.shorter AS {schema}.short NOT NULL")  # a domain over a domain
    db.execute(
        f"CREATE TABLE {schema}.d (id int PRIMARY KEY, name {schema}.label, score int NOT NULL DEFAULT 0,"
        f" code {schema}.shorter DEFAULT 'abc')"
    )
    t = Table(f"{schema}.d")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "score": i} for i in range(5)])
    sw.update(t, {"id": 9, "score": None})  # an explicit null: only this one is refused
    sw.update(t, {"id": 10, "code": "no"})  # the inner domain's CHECK
    sw.update(t, {"id": 11, "code": "long"})  # the inner domain's length
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.dead_lettered) == (5, 3)
    assert rows(db, t.name)[0] == (0, "unnamed", 0, "abc")
    dead = dead_entries(r, t.keys(0, prefix))
    assert 'null value in column "score"' in dead["9"]["error"]
    assert "violates check constraint" in dead["10"]["error"] and "too long" in dead["11"]["error"]
    sw.delete(t, 0)
    assert drain(r, dsn, prefix).deleted == 1 and count(db, t.name) == 4


class Score(pydantic.BaseModel):
    at: dt.datetime
    v: int


def test_pydantic_datetime_keys_name_their_record(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.s (at timestamptz PRIMARY KEY, v int)")
    t = Table(f"{schema}.s", key="at")
    sw = Syncwd(r, prefix=prefix)
    model = Score(at=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), v=1)
    record_id = sw.update(t, model)
    assert record_id == "2024-01-01T00:00:00Z"  # what pydantic stores
    assert sw.get(t, model) == {"at": "2024-01-01T00:00:00Z", "v": 1}
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.dead_lettered) == (1, 0)
    sw.delete(t, model)
    assert drain(r, dsn, prefix).deleted == 1 and count(db, t.name) == 0


def test_a_purged_tombstone_is_forgotten(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, name text NOT NULL, score int)")
    db.execute(f"CREATE TABLE {schema}.child (pid int REFERENCES {schema}.p ON DELETE RESTRICT)")
    t = Table(f"{schema}.p")
    sw = Syncwd(r, prefix=prefix)
    sw.update(t, {"id": 1, "name": "alice", "score": 10})
    drain(r, dsn, prefix)
    db.execute(f"INSERT INTO {schema}.child VALUES (1)")
    sw.delete(t, 1)
    assert drain(r, dsn, prefix).dead_lettered == 1  # the child row holds it
    assert purge_dead(r, prefix, [t.name], ["1"]) == 1  # the operator gives the delete up
    db.execute(f"DELETE FROM {schema}.child")
    sw.update(t, {"id": 1, "score": 11})  # a partial update of the row that stayed
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.dead_lettered) == (1, 0)
    assert rows(db, t.name) == [(1, "alice", 11)]


def test_two_spellings_among_other_bad_records_are_refused_together(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v text CHECK (v <> 'bad'))")
    t = Table(f"{schema}.p")
    sw = Syncwd(r, prefix=prefix)
    sw.update(t, {"id": "048", "v": "old"})
    sw.update_many(t, [{"id": i, "v": "bad" if i % 10 == 0 else "x"} for i in range(1, 100)])
    sw.update(t, {"id": 48, "v": "new"})
    report = drain(r, dsn, prefix)
    dead = dead_entries(r, t.keys(0, prefix))
    assert "names the same row as id '048'" in dead["48"]["error"] and "'48'" in dead["048"]["error"]
    assert (report.upserted, report.dead_lettered) == (99 - 9 - 1, 9 + 2)
    assert db.execute(f"SELECT count(*) FROM {t.name} WHERE id = 48").fetchone()[0] == 0


def test_an_id_that_is_not_utf8_is_dead_lettered(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.p (id text PRIMARY KEY, v int)")
    t = Table(f"{schema}.p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": str(i), "v": i} for i in range(10)])
    keys = t.keys(0, prefix)
    bad = b"\xff\xfe-id"
    r.set(keys.value_prefix.encode() + bad, b'{"id": "x", "v": 1}')
    r.sadd(keys.dirty, bad)
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.dead_lettered, report.exit_code) == (10, 1, 1)
    assert r.hexists(keys.dead, bad) and "key mismatch" in orjson.loads(r.hget(keys.dead, bad))["error"]
    assert drain(r, dsn, prefix).upserted == 0  # nothing left in flight


def test_a_registry_restored_for_a_named_table_keeps_the_others(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY)")
    db.execute(f"CREATE TABLE {schema}.b (id int PRIMARY KEY)")
    a, b = Table(f"{schema}.a"), Table(f"{schema}.b", partitions=2)
    sw = Syncwd(r, prefix=prefix)
    sw.update(a, {"id": 1})
    sw.update_many(b, [{"id": 1}, {"id": 2}])
    r.delete(registry_key(prefix))
    assert drain(r, dsn, prefix, tables=[a.name]).upserted == 1
    assert sorted(r.hkeys(registry_key(prefix))) == sorted([a.name.encode(), b.name.encode(), b"~epoch"])
    assert drain(r, dsn, prefix).upserted == 2


def test_status_json_while_a_run_is_active(r, db, redis_url, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY)")
    t = Table(f"{schema}.p", partitions=2)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i} for i in range(50_000)])
    with subprocess.Popen(drain_command(redis_url, dsn, prefix, "--batch", "100"), stdout=subprocess.DEVNULL) as proc:
        try:
            assert wait_for(lambda: count(db, t.name) > 0)
            out = cli("status", "--redis", redis_url, "--prefix", prefix, "--json")
        finally:
            proc.kill()
    assert out.returncode == 0, out.stderr
    status = last_json(out.stdout)["tables"][t.name]
    assert status["active_runs"] and all(k in ("0", "1") for k in status["active_runs"])


def test_an_unforeseen_error_ends_in_the_report(r, db, dsn, prefix, schema, monkeypatch):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY)")
    t = Table(f"{schema}.p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": 1}, {"id": 2}])

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(scripts, "dead", broken)
    monkeypatch.setattr("syncwd_fast.sinks.postgres.merge.Merger.merge", broken)
    report = drain(r, dsn, prefix, retries=1, retry_backoff=0.01)
    assert report.exit_code == 3 and "unexpected RuntimeError: a bug" in (report.aborted or "")
    monkeypatch.undo()
    assert drain(r, dsn, prefix).upserted == 2  # resumable


def test_a_new_row_whose_delete_was_refused_is_still_a_new_row_on_retry(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.parent (id int PRIMARY KEY, name text, note text DEFAULT 'default-note')")
    db.execute(f"CREATE TABLE {schema}.child (pid int REFERENCES {schema}.parent ON DELETE RESTRICT)")
    t = Table(f"{schema}.parent")
    sw = Syncwd(r, prefix=prefix)
    sw.update(t, {"id": 1, "name": "old", "note": "old-note"})
    drain(r, dsn, prefix)
    db.execute(f"INSERT INTO {schema}.child VALUES (1)")
    sw.delete(t, 1)
    sw.update(t, {"id": 1, "name": "new"})
    assert drain(r, dsn, prefix).dead_lettered == 1  # the old row is still referenced
    db.execute(f"DELETE FROM {schema}.child")
    retry_dead(r, prefix, [t.name])
    assert drain(r, dsn, prefix).upserted == 1
    assert rows(db, t.name) == [(1, "new", "default-note")]


def test_an_error_that_may_not_be_the_records_is_pinned_only_beside_successes(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.t (id int PRIMARY KEY, rel regclass, ns regnamespace)")
    t = Table(f"{schema}.t")
    sw = Syncwd(r, prefix=prefix)
    sw.update(t, {"id": 1, "rel": "pg_class"})
    sw.update(t, {"id": 2, "ns": "nosuch_schema"})  # 3F000 from a value: this record's fault
    sw.update(t, {"id": 3, "rel": "otherdb.public.t"})  # 0A000 from a value
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.dead_lettered, report.exit_code) == (1, 2, 1)
    # A trigger reaching for a dropped table fails every record: no record's fault.
    db.execute(f"CREATE TABLE {schema}.audit (id int)")
    db.execute(
        f"CREATE FUNCTION {schema}.aud() RETURNS trigger LANGUAGE plpgsql AS $$"
        f" BEGIN INSERT INTO {schema}.audit VALUES (NEW.id); RETURN NEW; END $$"
    )
    db.execute(f"CREATE TRIGGER aud AFTER INSERT OR UPDATE ON {t.name} FOR EACH ROW EXECUTE FUNCTION {schema}.aud()")
    db.execute(f"DROP TABLE {schema}.audit")
    sw.update_many(t, [{"id": i} for i in range(10, 15)])
    report = drain(r, dsn, prefix, retries=0)
    assert report.exit_code == 3 and report.dead_lettered == 0 and "audit" in (report.aborted or "")
    db.execute(f"CREATE TABLE {schema}.audit (id int)")
    assert drain(r, dsn, prefix).upserted == 5  # they waited in Redis


def test_deferred_constraints_are_checked_at_the_end_of_the_batch(r, db, dsn, prefix, schema):
    db.execute(
        f"CREATE TABLE {schema}.node (id int PRIMARY KEY, parent int REFERENCES {schema}.node"
        " DEFERRABLE INITIALLY DEFERRED, name text)"
    )
    t = Table(f"{schema}.node")
    sw = Syncwd(r, prefix=prefix)
    for k in range(20):
        sw.update(t, {"id": k + 1, "parent": 1000 + k})  # a child, in one column group
        sw.update(t, {"id": 1000 + k, "name": f"root{k}"})  # its parent, in another
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.dead_lettered) == (40, 0)
    sw.update(t, {"id": 99, "parent": 5000})  # no such parent, ever
    sw.update(t, {"id": 98, "name": "fine"})
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.dead_lettered) == (1, 1)
    assert "SQLSTATE 23503" in dead_entries(r, t.keys(0, prefix))["99"]["error"]


def test_tables_lost_with_the_registry_are_found_after_it_was_created_again(r, db, dsn, prefix, schema):
    for name in ("a", "b", "c"):
        db.execute(f"CREATE TABLE {schema}.{name} (id int PRIMARY KEY)")
    a, b, c = (Table(f"{schema}.{name}") for name in "abc")
    Syncwd(r, prefix=prefix).update_many(a, [{"id": 1}])
    Syncwd(r, prefix=prefix).update_many(b, [{"id": 1}])
    Syncwd(r, prefix=prefix).update_many(c, [{"id": 1}])
    drain(r, dsn, prefix)  # a look, under the registry's epoch
    sw = Syncwd(r, prefix=prefix)
    for table in (a, b, c):
        sw.update(table, {"id": 2})
    r.delete(registry_key(prefix))  # lost ...
    Syncwd(r, prefix=prefix).update(a, {"id": 3})  # ... and created again by a writer of a alone
    report = drain(r, dsn, prefix)
    assert (report.upserted, sorted(report.tables)) == (4, [a.name, b.name, c.name])
    assert [count(db, table.name) for table in (a, b, c)] == [3, 2, 2]
    # Once settled, a drain does not scan again.
    assert drain(r, dsn, prefix).upserted == 0


class Keyed(pydantic.BaseModel):
    code: str

    @pydantic.field_serializer("code")
    def upper(self, value: str) -> str:
        return value.upper()


def test_a_model_that_rewrites_its_key_names_its_record_by_the_stored_key(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.k (code text PRIMARY KEY)")
    t = Table(f"{schema}.k", key="code")
    assert Syncwd(r, prefix=prefix).update(t, Keyed(code="abc")) == "ABC"
    assert drain(r, dsn, prefix).upserted == 1 and rows(db, t.name) == [("ABC",)]
