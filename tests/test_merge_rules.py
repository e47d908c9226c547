"""What the merge promises under awkward data: two spellings of one key,
partial records on NOT NULL tables, version-column ties and nulls, a whole
batch of bad records, rows the COPY itself refuses."""

from __future__ import annotations

import uuid

import pytest

from syncwd_fast import FastDrainer, Syncwd, Table

from .helpers import cli, count, dead_entries, last_json, rows


def drain(r, dsn, prefix, **kw):
    return FastDrainer(r, dsn, prefix=prefix, **kw).drain()


def raw_write(r, t, prefix, record_id, value):
    keys = t.keys(t.partition(record_id), prefix)
    r.set(keys.value(record_id), value)
    r.sadd(keys.dirty, record_id)


# --- two ids that name one row ---------------------------------------------------


def test_two_spellings_of_an_int_key_are_dead_lettered_and_the_rest_lands(r, db, redis_url, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int)")
    db.execute(f"CREATE TABLE {schema}.q (id int PRIMARY KEY, v int)")
    p, q = Table(f"{schema}.p"), Table(f"{schema}.q", partitions=4)
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(p, [{"id": i, "v": i} for i in range(1, 500)])
    sw.update(p, {"id": "07", "v": -7})  # the id "07" next to the id "7"
    sw.update_many(q, [{"id": i, "v": i} for i in range(100)])
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--json")
    assert out.returncode == 1, out.stderr
    report = last_json(out.stdout)
    assert report["tables"][p.name]["upserted"] == 498 and report["tables"][p.name]["dead_lettered"] == 2
    assert report["tables"][q.name]["upserted"] == 100  # other tables' counts are kept
    dead = dead_entries(r, p.keys(0, prefix))
    assert set(dead) == {"7", "07"}
    assert "names the same row as id '07'" in dead["7"]["error"] and "SQLSTATE 21000" in dead["7"]["error"]
    assert count(db, p.name) == 498 and count(db, q.name) == 100
    assert r.scard(p.keys(0, prefix).dirty) == 0
    status = last_json(cli("status", "--redis", redis_url, "--prefix", prefix, "--json").stdout)["tables"]
    assert status[p.name]["inflight"] == 0 and status[p.name]["dead"] == 2


@pytest.mark.parametrize("kind", ["uuid", "citext"])
def test_keys_equal_only_to_postgresql_are_one_row(r, db, dsn, prefix, schema, kind):
    if kind == "citext":
        db.execute("CREATE EXTENSION IF NOT EXISTS citext")
    db.execute(f"CREATE TABLE {schema}.k (id {kind} PRIMARY KEY, v int)")
    t = Table(f"{schema}.k")
    sw = Syncwd(r, prefix=prefix)
    one = str(uuid.uuid4()) if kind == "uuid" else "Alice"
    sw.update(t, {"id": one.upper(), "v": 1})
    sw.update(t, {"id": one.lower(), "v": 2})
    sw.update(t, {"id": str(uuid.uuid4()) if kind == "uuid" else "bob", "v": 3})
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.dead_lettered, report.exit_code) == (1, 2, 1)
    assert set(dead_entries(r, t.keys(0, prefix))) == {one.upper(), one.lower()}


# --- partial records on tables with NOT NULL columns ------------------------------


def test_partial_records_update_existing_rows_of_not_null_tables(r, db, dsn, prefix, schema):
    db.execute(
        f"CREATE TABLE {schema}.g (user_id bigint PRIMARY KEY, level int NOT NULL, score bigint,"
        " born timestamptz NOT NULL DEFAULT now(), n bigint GENERATED ALWAYS AS IDENTITY)"
    )
    t = Table(f"{schema}.g", key="user_id", partitions=2)
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"user_id": i, "level": 1, "score": 0} for i in range(1, 101)])
    drain(r, dsn, prefix)
    sw.update_many(t, [{"user_id": i, "score": 9999} for i in range(1, 101)])  # no level: existing rows
    sw.update(t, {"user_id": 7, "level": 5})  # carries level, not score
    sw.update(t, {"user_id": 500, "score": 1})  # a new row without level
    sw.update(t, {"user_id": 501, "level": 2})  # a new row with everything it needs
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.dead_lettered, report.exit_code) == (101, 1, 1)
    got = {k: (lv, s) for k, lv, s in db.execute(f"SELECT user_id, level, score FROM {t.name}").fetchall()}
    assert got[1] == (1, 9999) and got[7] == (5, 0) and got[501] == (2, None) and 500 not in got
    dead = dead_entries(r, t.keys(t.partition("500"), prefix))
    assert dead["500"]["error"].startswith("a new row needs NOT NULL column(s) level without default")


def test_an_all_bad_batch_of_10000_is_dead_lettered_and_the_drain_finishes(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.nn (id int PRIMARY KEY, need int NOT NULL, v int)")
    t = Table(f"{schema}.nn")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "v": i} for i in range(10_000)])  # new rows, all lacking "need"
    sw.update(t, {"id": 20_000, "need": 1})
    # A short lease: isolating 10,000 bad records takes longer, and the lease must hold.
    report = drain(r, dsn, prefix, batch=10_000, lease_seconds=1.0)
    assert report.aborted is None
    assert (report.upserted, report.dead_lettered, report.exit_code) == (1, 10_000, 1)
    keys = t.keys(0, prefix)
    assert r.hlen(keys.dead) == 10_000 and status_inflight(r, keys) == 0
    assert rows(db, t.name) == [(20_000, 1, None)]


def test_an_all_bad_batch_found_by_halving_keeps_its_lease(r, db, dsn, prefix, schema):
    """A CHECK names no row: halving finds the 10,000 bad records, one
    savepoint each, inside one transaction that outlasts the 1 s lease many
    times over; the heartbeat keeps the lease and the batch commits."""
    db.execute(f"CREATE TABLE {schema}.ck (id int PRIMARY KEY, v int CHECK (v >= 0))")
    t = Table(f"{schema}.ck")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "v": -1} for i in range(10_000)])
    sw.update(t, {"id": 20_000, "v": 1})
    report = drain(r, dsn, prefix, batch=10_001, lease_seconds=1.0)
    assert report.aborted is None
    assert (report.upserted, report.dead_lettered, report.exit_code) == (1, 10_000, 1)
    keys = t.keys(0, prefix)
    assert r.hlen(keys.dead) == 10_000 and status_inflight(r, keys) == 0
    assert 'violates check constraint "ck_v_check"' in dead_entries(r, keys)["77"]["error"]


def status_inflight(r, keys):
    return sum(r.exists(k) for k in r.scan_iter(match=keys.run_prefix + "*"))  # no run key is left


def test_a_row_the_copy_itself_refuses_is_dead_lettered_by_its_line(r, db, dsn, prefix, schema, monkeypatch):
    """The decoder screens \\u0000 out before SQL; without that screen the
    server's COPY refuses the row and names its line, which is dropped."""
    monkeypatch.setattr("syncwd_fast.sinks.postgres.decode.has_nul_escape", lambda doc: False)
    db.execute(f"CREATE TABLE {schema}.c (id int PRIMARY KEY, s text)")
    t = Table(f"{schema}.c")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "s": f"s{i}"} for i in range(300)])
    sw.update(t, {"id": 1000, "s": "nul\u0000byte"})
    sw.update(t, {"id": 1001, "s": "another\u0000"})
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.dead_lettered) == (300, 2)
    dead = dead_entries(r, t.keys(0, prefix))
    assert "SQLSTATE 22P05" in dead["1000"]["error"] and "SQLSTATE 22P05" in dead["1001"]["error"]


# --- the version column -------------------------------------------------------------


@pytest.fixture
def versioned(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.v (id int PRIMARY KEY, n int, ver int)")
    t = Table(f"{schema}.v", version_column="ver", ttl=600)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "n": 0, "ver": 5} for i in range(1, 5)])
    drain(r, dsn, prefix)
    return t


def test_equal_and_null_versions_are_later_writes_and_win(r, db, dsn, prefix, versioned):
    sw = Syncwd(r, prefix=prefix)
    sw.update(versioned, {"id": 1, "n": 11, "ver": 5})  # same version: the later write wins
    sw.update(versioned, {"id": 2, "n": 12, "ver": None})  # no version: not older, written
    sw.update(versioned, {"id": 3, "n": 13})  # the group does not carry the version: written
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.skipped) == (3, 0)
    assert rows(db, versioned.name) == [(1, 11, 5), (2, 12, None), (3, 13, 5), (4, 0, 5)]


def test_older_versions_are_counted_skipped_and_never_expire(r, db, redis_url, dsn, prefix, versioned):
    sw = Syncwd(r, prefix=prefix)
    sw.update(versioned, {"id": 1, "n": 99, "ver": 4})  # older than the row: not written
    sw.update(versioned, {"id": 2, "n": 22, "ver": 6})
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--json")
    assert out.returncode == 0, out.stderr
    report = last_json(out.stdout)
    assert (report["upserted"], report["skipped"]) == (1, 1)
    assert report["tables"][versioned.name]["skipped"] == 1
    assert rows(db, versioned.name)[:2] == [(1, 0, 5), (2, 22, 6)]
    keys = versioned.keys(0, prefix)
    assert r.ttl(keys.value("1")) == -1  # not durable: it must not expire as if it were
    assert r.ttl(keys.value("2")) > 0
    assert r.scard(keys.dirty) == 0 and status_inflight(r, keys) == 0


def test_older_version_with_a_partial_record_on_a_not_null_table(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.w (id int PRIMARY KEY, need int NOT NULL, n int, ver int)")
    t = Table(f"{schema}.w", version_column="ver")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": 1, "need": 1, "n": 0, "ver": 5}, {"id": 2, "need": 1, "n": 0, "ver": 5}])
    drain(r, dsn, prefix)
    sw.update(t, {"id": 1, "n": 1, "ver": 4})  # partial and older: skipped
    sw.update(t, {"id": 2, "n": 2, "ver": 5})  # partial and equal: written
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.skipped) == (1, 1)
    assert rows(db, t.name) == [(1, 1, 0, 5), (2, 1, 2, 5)]
