"""Bad records are dead-lettered with a reason; the rest of the batch lands;
a missing table leaves its data in Redis while the others drain."""

import orjson
import pytest

from syncwd_fast import FastDrainer, Syncwd, Table

from .helpers import count, dead_entries
from .targets import db, dsn, schema, target  # noqa: F401  (each test against each built-in sink)


@pytest.fixture
def t(db, schema):
    db.execute(
        f"""CREATE TABLE {schema}.p (id int PRIMARY KEY, score int CHECK (score >= 0), name text NOT NULL DEFAULT '')"""
    )
    return Table(f"{schema}.p")  # one partition: every record in one batch


def raw_write(r, t, prefix, record_id, value):
    keys = t.keys(0, prefix)
    if value is not None:
        r.set(keys.value(record_id), value)
    r.sadd(keys.dirty, record_id)


def drain(r, dsn, prefix, **kw):
    return FastDrainer(r, dsn, prefix=prefix, **kw).drain()


def test_every_kind_of_bad_value_is_dead_lettered_and_good_rows_land(r, db, dsn, prefix, t):
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "score": i} for i in range(1, 101)])
    raw_write(r, t, prefix, "200", b'{"id": 200, "score":')  # truncated JSON
    raw_write(r, t, prefix, "201", b"[201]")  # not an object
    raw_write(r, t, prefix, "202", b'{"score": 1}')  # key column missing
    raw_write(r, t, prefix, "203", b'{"id": 999}')  # key does not match the id
    raw_write(r, t, prefix, "204", None)  # value vanished while dirty
    raw_write(r, t, prefix, "205", b'~{"nope": 1}')  # tombstone without its key
    raw_write(r, t, prefix, "206", b'{"id": null}')
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.dead_lettered, report.exit_code) == (100, 7, 1)
    assert count(db, t.name) == 100
    dead = dead_entries(r, t.keys(0, prefix))
    assert dead["200"]["error"].startswith("invalid JSON")
    assert dead["200"]["value"] == '{"id": 200, "score":'
    assert dead["201"]["error"] == "not a JSON object: got list"
    assert dead["202"]["error"] == "missing key column 'id'"
    assert dead["203"]["error"] == "key mismatch: the row's key is '999', its id is '203'"
    assert dead["204"]["error"].startswith("value missing") and dead["204"]["value"] is None
    assert dead["205"]["error"] == "missing key column 'id'"
    assert dead["206"]["error"] == "missing key column 'id'"
    # Nothing is left in flight; a second drain has nothing to do.
    again = drain(r, dsn, prefix)
    assert (again.upserted, again.dead_lettered) == (0, 0)


@pytest.mark.postgres_only
def test_rows_postgresql_rejects_are_isolated(r, db, dsn, prefix, t):
    sw = Syncwd(r, prefix=prefix)
    good = [{"id": i, "score": i} for i in range(1, 1001)]
    bad = [
        {"id": 5000, "score": -1},  # CHECK
        {"id": 5001, "score": "lots"},  # type
        {"id": 5002, "score": 2**40},  # out of range for int
        {"id": 5003, "name": None},  # NOT NULL
        {"id": 5004, "name": "nul\u0000byte"},  # PostgreSQL text cannot hold NUL
    ]
    sw.update_many(t, good + bad)
    report = drain(r, dsn, prefix, batch=5000)
    assert (report.upserted, report.dead_lettered) == (1000, 5)
    assert count(db, t.name) == 1000
    dead = dead_entries(r, t.keys(0, prefix))
    assert 'violates check constraint "p_score_check"' in dead["5000"]["error"]
    assert "invalid input syntax for type integer" in dead["5001"]["error"]
    assert "out of range" in dead["5002"]["error"]
    assert 'null value in column "name"' in dead["5003"]["error"]
    assert "\\u0000" in dead["5004"]["error"]
    assert orjson.loads(dead["5000"]["value"]) == {"id": 5000, "score": -1}


def test_unknown_json_keys_are_ignored_or_strict(r, db, dsn, prefix, t):
    sw = Syncwd(r, prefix=prefix)
    sw.update(t, {"id": 1, "score": 1, "extra": "x"})
    assert drain(r, dsn, prefix).upserted == 1
    sw.update(t, {"id": 2, "score": 2, "extra": "x", "more": 1})
    sw.update(t, {"id": 3, "score": 3})
    report = drain(r, dsn, prefix, strict=True)
    assert (report.upserted, report.dead_lettered) == (1, 1)
    assert dead_entries(r, t.keys(0, prefix))["2"]["error"] == f"not columns of {t.name}: extra, more"


def test_a_fixed_dead_letter_lands_on_the_next_write(r, db, dsn, prefix, t):
    sw = Syncwd(r, prefix=prefix)
    sw.update(t, {"id": 1, "score": -5})
    assert drain(r, dsn, prefix).dead_lettered == 1
    sw.update(t, {"id": 1, "score": 5})
    assert drain(r, dsn, prefix).upserted == 1
    assert dead_entries(r, t.keys(0, prefix)) == {}


def test_a_missing_table_is_reported_and_the_others_drain(r, db, dsn, prefix, schema, t):
    sw = Syncwd(r, prefix=prefix)
    ghost = Table(f"{schema}.ghost", partitions=2)
    sw.update_many(ghost, [{"id": i} for i in range(10)])
    sw.update(t, {"id": 1, "score": 1})
    report = drain(r, dsn, prefix)
    assert report.tables[t.name].upserted == 1
    assert "does not exist" in report.tables[ghost.name].error and ghost.name in report.tables[ghost.name].error
    assert report.exit_code == 1
    # Its data is untouched in Redis and drains once the table exists.
    assert sum(r.scard(ghost.keys(p, prefix).dirty) for p in range(2)) == 10
    db.execute(f"CREATE TABLE {ghost.name} (id int PRIMARY KEY)")
    assert drain(r, dsn, prefix).upserted == 10


@pytest.mark.postgres_only
def test_big_documents_unicode_and_foreign_keys(r, db, dsn, prefix, schema):
    db.execute(f"""
        CREATE TABLE {schema}.teams (id int PRIMARY KEY);
        INSERT INTO {schema}.teams VALUES (1)""")
    # Identifiers must be plain ASCII SQL identifiers; names and values may be any unicode.
    with pytest.raises(ValueError, match="invalid"):
        Table(f"{schema}.Spieler", key="schlüssel")
    db.execute(
        f"CREATE TABLE {schema}.players (name text PRIMARY KEY, team int REFERENCES {schema}.teams (id), doc jsonb)"
    )
    t = Table(f"{schema}.players", key="name")
    big = {"blob": "x" * 1_000_000, "nested": [{"k": i} for i in range(1000)]}
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(
        t,
        [
            {"name": "ünïcødé ✓ 名前 🎮", "team": 1, "doc": {"ключ": "значение", "emoji": "🎲"}},
            {"name": "big", "team": 1, "doc": big},
            {"name": "orphan", "team": 2},  # foreign key violation
            {"name": "'; DROP TABLE teams; --", "team": 1},
        ],
    )
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.dead_lettered) == (3, 1)
    got = dict(db.execute(f"SELECT name, doc FROM {t.name}").fetchall())
    assert got["ünïcødé ✓ 名前 🎮"] == {"ключ": "значение", "emoji": "🎲"}
    assert got["big"] == big
    assert got["'; DROP TABLE teams; --"] is None
    assert count(db, f"{schema}.teams") == 1
    dead = dead_entries(r, t.keys(0, prefix))
    assert 'violates foreign key constraint "players_team_fkey"' in dead["orphan"]["error"]


def test_an_older_version_never_replaces_a_newer_one(r, db, redis_url, dsn, prefix, schema):
    from .helpers import cli

    db.execute(f"CREATE TABLE {schema}.v (id int PRIMARY KEY, n int, updated_at timestamptz)")
    t = Table(f"{schema}.v", version_column="updated_at")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(
        t,
        [
            {"id": 1, "n": 2, "updated_at": "2026-11-28T02:00:00Z"},
            {"id": 2, "n": 2, "updated_at": "2026-11-28T02:00:00Z"},
        ],
    )
    drain(r, dsn, prefix)
    # A stale value (e.g. from a replica or a late producer) reaches Redis after a newer one landed.
    sw.update_many(
        t,
        [
            {"id": 1, "n": 1, "updated_at": "2026-11-28T01:00:00Z"},  # older: ignored
            {"id": 2, "n": 3, "updated_at": "2026-11-28T03:00:00Z"},  # newer: applied
            {"id": 3, "n": 1, "updated_at": "2026-11-28T01:00:00Z"},  # new row: inserted
        ],
    )
    # The guard is in the registry: the CLI applies it with no option.
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix)
    assert out.returncode == 0, out.stderr
    assert db.execute(f"SELECT id, n FROM {t.name} ORDER BY id").fetchall() == [(1, 2), (2, 3), (3, 1)]
