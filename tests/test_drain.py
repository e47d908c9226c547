"""FastDrainer against real Redis and PostgreSQL: inserts, updates, partial
columns, deletes, idempotent re-runs, TTLs, composite keys, workers."""

import pytest

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.errors import ConfigurationError

from .helpers import cli, count, last_json, rows
from .targets import db, dsn, schema, target  # noqa: F401  (each test against each built-in sink)


@pytest.fixture
def game(db, schema, target):
    tags = "tags text[]," if target.kind == "postgres" else ""  # MariaDB has no arrays
    db.execute(f"""CREATE TABLE {schema}.progress (
        user_id bigint PRIMARY KEY, level int NOT NULL DEFAULT 1, score bigint,
        name text, inventory jsonb, {tags} seen_at timestamptz,
        doubled bigint GENERATED ALWAYS AS (score * 2) STORED)""")
    return Table(f"{schema}.progress", key="user_id", partitions=3, ttl=300)


def drain(r, dsn, prefix, **kw):
    return FastDrainer(r, dsn, prefix=prefix, **kw).drain()


@pytest.mark.postgres_only
def test_insert_update_and_typing(r, db, dsn, prefix, game):
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(game, [{"user_id": i, "level": 2, "score": i * 10, "name": f"p{i}"} for i in range(100)])
    sw.update(
        game,
        {
            "user_id": 5,
            "level": 3,
            "score": 1,
            "name": "ünï ✓",
            "inventory": {"a": [1, {"b": None}]},
            "tags": ["x", "y"],
            "seen_at": "2026-11-28T01:02:03Z",
        },
    )
    report = drain(r, dsn, prefix)
    assert (report.upserted, report.deleted, report.dead_lettered, report.exit_code) == (100, 0, 0, 0)
    assert report.tables[game.name].upserted == 100
    assert count(db, game.name) == 100
    row = db.execute(
        f"SELECT level, score, name, inventory, tags, seen_at::text, doubled FROM {game.name} WHERE user_id = 5"
    ).fetchone()
    assert row == (3, 1, "ünï ✓", {"a": [1, {"b": None}]}, ["x", "y"], "2026-11-28 01:02:03+00", 2)

    sw.update(game, {"user_id": 5, "level": 4, "score": 2})
    report = drain(r, dsn, prefix)
    assert report.upserted == 1
    assert db.execute(f"SELECT level, score, name FROM {game.name} WHERE user_id = 5").fetchone() == (4, 2, "ünï ✓")


def test_a_missing_json_key_never_nulls_a_column(r, db, dsn, prefix, game):
    sw = Syncwd(r, prefix=prefix)
    sw.update(game, {"user_id": 1, "level": 5, "score": 50, "name": "ann"})
    drain(r, dsn, prefix)
    sw.update(game, {"user_id": 1, "score": 60})  # only the score
    sw.update(game, {"user_id": 2, "name": "bob"})  # a new row: defaults fill the rest
    sw.update(game, {"user_id": 3, "score": None})  # an explicit null does null the column
    assert drain(r, dsn, prefix).upserted == 3
    got = db.execute(f"SELECT user_id, level, score, name, inventory, seen_at, doubled FROM {game.name} ORDER BY 1")
    assert got.fetchall()[:3] == [
        (1, 5, 60, "ann", None, None, 120),
        (2, 1, None, "bob", None, None, None),
        (3, 1, None, None, None, None, None),
    ]


def test_deletes(r, db, dsn, prefix, game):
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(game, [{"user_id": i} for i in range(10)])
    drain(r, dsn, prefix)
    for i in range(5):
        sw.delete(game, i)
    sw.delete(game, 999)  # never existed: nothing to do, no error
    report = drain(r, dsn, prefix)
    assert (report.deleted, report.upserted) == (6, 0)
    assert [row[0] for row in rows(db, game.name)] == [5, 6, 7, 8, 9]
    assert not r.exists(game.keys(game.partition("0"), prefix).value("0"))  # tombstone gone


def test_durable_values_get_the_cache_ttl(r, dsn, prefix, game):
    sw = Syncwd(r, prefix=prefix)
    sw.update(game, {"user_id": 1})
    key = game.keys(game.partition("1"), prefix).value("1")
    assert r.ttl(key) == -1
    drain(r, dsn, prefix)
    assert 290 < r.ttl(key) <= 300
    assert sw.get(game, 1) == {"user_id": 1}


def test_rerun_is_idempotent_and_a_second_drain_finds_nothing(r, db, dsn, prefix, game):
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(game, [{"user_id": i, "score": i} for i in range(1000)])
    first = drain(r, dsn, prefix, batch=64)
    assert first.upserted == 1000
    before = rows(db, game.name)
    second = drain(r, dsn, prefix, batch=64)
    assert (second.upserted, second.deleted, second.exit_code) == (0, 0, 0)
    # Merging the same values again (a crash after COMMIT, before ack) changes nothing.
    sw.update_many(game, [{"user_id": i, "score": i} for i in range(1000)])
    assert drain(r, dsn, prefix, batch=64).upserted == 1000
    assert rows(db, game.name) == before


def test_composite_keys_and_quoted_identifiers(r, db, dsn, prefix, schema):
    db.execute(
        f'CREATE TABLE {schema}."Scores" ("userId" int, game varchar(64), elo int, PRIMARY KEY ("userId", game))'
    )
    t = Table(f"{schema}.Scores", key=("userId", "game"))
    sw = Syncwd(r, prefix=prefix)
    sw.update(t, {"userId": 1, "game": "go", "elo": 1})
    sw.update(t, {"userId": 1, "game": "chess", "elo": 2})
    assert drain(r, dsn, prefix).upserted == 2
    sw.delete(t, (1, "go"))
    assert drain(r, dsn, prefix).deleted == 1
    assert rows(db, f'{schema}."Scores"') == [(1, "chess", 2)]


def test_a_unique_index_serves_as_the_key(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.u (id serial PRIMARY KEY, email text NOT NULL UNIQUE, n int)")
    t = Table(f"{schema}.u", key="email")
    Syncwd(r, prefix=prefix).update(t, {"email": "a@x", "n": 1})
    assert drain(r, dsn, prefix).upserted == 1
    Syncwd(r, prefix=prefix).update(t, {"email": "a@x", "n": 2})
    drain(r, dsn, prefix)
    assert rows(db, f"{schema}.u") == [(1, "a@x", 2)]


def test_a_key_without_a_unique_index_is_a_configuration_error(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.nokey (id int, n int)")
    Syncwd(r, prefix=prefix).update(Table(f"{schema}.nokey"), {"id": 1})
    report = drain(r, dsn, prefix)
    assert "no primary key or unique index" in report.tables[f"{schema}.nokey"].error
    assert report.exit_code == 1


def test_workers_drain_partitions_in_parallel(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.w (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.w", partitions=8)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i} for i in range(20_000)])
    report = drain(r, dsn, prefix, workers=4, batch=1000)
    assert report.upserted == 20_000
    assert db.execute(f"SELECT count(*), sum(v) FROM {schema}.w").fetchone() == (20_000, sum(range(20_000)))


def test_only_the_named_tables_drain(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY); CREATE TABLE {schema}.b (id int PRIMARY KEY)")
    sw = Syncwd(r, prefix=prefix)
    sw.update(Table(f"{schema}.a"), {"id": 1})
    sw.update(Table(f"{schema}.b"), {"id": 1})
    report = drain(r, dsn, prefix, tables=[f"{schema}.a"])
    assert list(report.tables) == [f"{schema}.a"] and report.upserted == 1
    assert count(db, f"{schema}.b") == 0
    with pytest.raises(ConfigurationError, match="not registered"):
        drain(r, dsn, prefix, tables=[f"{schema}.zzz"])


def test_a_decode_responses_client_works_too(new_redis, db, dsn, prefix, game):
    r = new_redis(decode_responses=True)
    sw = Syncwd(r, prefix=prefix)
    sw.update(game, {"user_id": 1, "name": "é"})
    assert sw.get(game, 1) == {"user_id": 1, "name": "é"}
    assert drain(r, dsn, prefix).upserted == 1
    assert db.execute(f"SELECT name FROM {game.name}").fetchone() == ("é",)


@pytest.mark.postgres_only
def test_ids_and_values_land_exactly_at_volume(r, db, redis_url, dsn, prefix, schema):
    """300k dirty records through `syncwd-fast drain --batch 5000`."""
    db.execute(f"CREATE TABLE {schema}.big (id bigint PRIMARY KEY, v bigint, s text)")
    t = Table(f"{schema}.big", partitions=4)
    sw = Syncwd(r, prefix=prefix)
    for start in range(0, 300_000, 50_000):
        sw.update_many(t, [{"id": i, "v": i * 3, "s": str(i)} for i in range(start, start + 50_000)])
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--batch", "5000", "--json")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["upserted"] == 300_000
    assert db.execute(
        f"SELECT count(*), sum(v), count(*) FILTER (WHERE s <> id::text) FROM {schema}.big"
    ).fetchone() == (300_000, 3 * sum(range(300_000)), 0)
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--batch", "5000", "--json")
    assert (out.returncode, last_json(out.stdout)["upserted"]) == (0, 0)
