"""syncwd-fast dead-letter list | retry | purge"""

import orjson
import pytest

from syncwd_fast import FastDrainer, Syncwd, Table

from .helpers import cli, count, dead_entries, last_json


@pytest.fixture
def t(db, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, score int CONSTRAINT score_positive CHECK (score > 0))")
    return Table(f"{schema}.p", partitions=2, ttl=120)


def dead_list(redis_url, prefix, *args):
    out = cli("dead-letter", "list", "--redis", redis_url, "--prefix", prefix, "--json", *args)
    assert out.returncode == 0, out.stderr
    return [orjson.loads(line) for line in out.stdout.splitlines()]


def test_list_retry_after_fixing_the_cause_and_the_hash_empties(r, db, redis_url, dsn, prefix, t):
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "score": i - 5} for i in range(1, 21)])  # ids 1..5 violate the CHECK
    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert (report.upserted, report.dead_lettered) == (15, 5)

    entries = dead_list(redis_url, prefix, "--table", t.name)
    assert sorted(int(e["id"]) for e in entries) == [1, 2, 3, 4, 5]
    one = next(e for e in entries if e["id"] == "3")
    assert 'violates check constraint "score_positive"' in one["error"]
    assert one["value"] == {"id": 3, "score": -2} and one["value_is_json"]  # the record's JSON, not a string of it
    assert one["attempts"] == 1 and one["table"] == t.name

    # Retried before the fix: dead again, one more attempt counted.
    out = cli("dead-letter", "retry", "--redis", redis_url, "--prefix", prefix, "--dsn", dsn, "--json")
    assert out.returncode == 1 and last_json(out.stdout)["dead_lettered"] == 5
    assert {e["attempts"] for e in dead_list(redis_url, prefix)} == {2}

    db.execute(f"ALTER TABLE {t.name} DROP CONSTRAINT score_positive")
    out = cli("dead-letter", "retry", "--redis", redis_url, "--prefix", prefix, "--dsn", dsn, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert last_json(out.stdout)["upserted"] == 5
    assert count(db, t.name) == 20
    assert dead_list(redis_url, prefix) == []
    assert all(not r.exists(t.keys(p, prefix).dead) for p in range(2))


def test_retry_without_dsn_marks_dirty_only_the_ids_asked(r, redis_url, dsn, prefix, t):
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": 1, "score": -1}, {"id": 2, "score": -1}])
    FastDrainer(r, dsn, prefix=prefix).drain()
    out = cli("dead-letter", "retry", "--redis", redis_url, "--prefix", prefix, "--table", t.name, "--id", "2")
    assert out.returncode == 0 and "1 dead letter marked dirty again" in out.stdout
    dirty = {x for p in range(2) for x in r.smembers(t.keys(p, prefix).dirty)}
    assert dirty == {b"2"}


def test_retry_names_the_ids_that_are_no_dead_letters(r, redis_url, dsn, prefix, t):
    Syncwd(r, prefix=prefix).update_many(t, [{"id": 1, "score": -1}, {"id": 2, "score": 5}])
    FastDrainer(r, dsn, prefix=prefix).drain()  # 1 dead, 2 landed
    args = ("dead-letter", "retry", "--redis", redis_url, "--prefix", prefix, "--table", t.name)
    out = cli(*args, "--id", "1", "--id", "2", "--id", "77")
    assert out.returncode == 0 and "1 dead letter marked dirty again" in out.stdout
    assert "2 id(s) asked for are no dead letters of " + t.name + ": 2, 77" in out.stderr
    assert {x for p in range(2) for x in r.smembers(t.keys(p, prefix).dirty)} == {b"1"}
    out = cli(*args, "--id", "1")
    assert out.returncode == 0 and "no dead letters" not in out.stderr


def test_retry_with_dsn_drains_only_the_retried_tables(r, db, redis_url, dsn, prefix, schema, t):
    db.execute(f"CREATE TABLE {schema}.other (id int PRIMARY KEY, v int)")
    other = Table(f"{schema}.other")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": 1, "score": -1}, {"id": 2, "score": 3}])
    FastDrainer(r, dsn, prefix=prefix).drain()
    db.execute(f"ALTER TABLE {t.name} DROP CONSTRAINT score_positive")
    sw.update_many(other, [{"id": i, "v": i} for i in range(5)])  # waiting for the next drain, not the retry
    base = ("dead-letter", "retry", "--redis", redis_url, "--prefix", prefix, "--dsn", dsn, "--json")
    out = cli(*base, "--pop", "7")
    assert out.returncode == 0, out.stderr
    assert last_json(out.stdout)["upserted"] == 1 and count(db, t.name) == 2
    assert count(db, other.name) == 0 and r.scard(other.keys(0, prefix).dirty) == 5
    # Nothing to retry: no drain at all (it would take every table's backlog).
    out = cli(*base)
    assert out.returncode == 0 and "nothing to drain" in out.stderr
    assert last_json(out.stdout)["upserted"] == 0 and count(db, other.name) == 0
    assert cli(*base, "--pop", "0").returncode == 2


def test_purge_asks_unless_yes(r, redis_url, dsn, prefix, t):
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": 1, "score": -1}, {"id": 2, "score": -1}])
    FastDrainer(r, dsn, prefix=prefix).drain()
    out = cli("dead-letter", "purge", "--redis", redis_url, "--prefix", prefix, input="n\n")
    assert out.returncode == 0 and "Nothing purged." in out.stderr  # declining is no failure
    assert len(dead_list(redis_url, prefix)) == 2
    out = cli("dead-letter", "purge", "--redis", redis_url, "--prefix", prefix, "--id", "1", "--yes")
    assert out.returncode == 0 and "1 dead letter purged" in out.stdout
    assert [e["id"] for e in dead_list(redis_url, prefix)] == ["2"]
    value_key = t.keys(t.partition("1"), prefix).value("1")
    assert 0 < r.ttl(value_key) <= 120  # still readable, now expiring like any durable value
    out = cli("dead-letter", "purge", "--redis", redis_url, "--prefix", prefix, input="y\n")
    assert out.returncode == 0 and dead_list(redis_url, prefix) == []


def test_unknown_table_is_a_usage_error(redis_url, prefix):
    out = cli("dead-letter", "list", "--redis", redis_url, "--prefix", prefix, "--table", "nope")
    assert out.returncode == 2 and "not registered" in out.stderr


def test_list_filters_limits_and_counts(r, redis_url, dsn, prefix, t, schema, db):
    db.execute(f"CREATE TABLE {schema}.q (id int PRIMARY KEY, v int)")
    q = Table(f"{schema}.q")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "score": -i} for i in range(1, 6)])  # 5 break the CHECK
    sw.update_many(q, [{"id": 1, "v": "one"}])  # 1 not an int
    r.set(q.keys(0, prefix).value("2"), b"{not json")
    r.sadd(q.keys(0, prefix).dirty, "2")
    FastDrainer(r, dsn, prefix=prefix).drain()
    base = ("dead-letter", "list", "--redis", redis_url, "--prefix", prefix)

    out = cli(*base, "--count", "--json")
    assert orjson.loads(out.stdout) == {"total": 7, "tables": {t.name: 5, q.name: 2}}
    out = cli(*base, "--count", "--error", "CHECK CONSTRAINT")
    assert out.stdout.splitlines() == [f"{t.name}: 5", "total: 5"]
    assert len(dead_list(redis_url, prefix, "--error", "check constraint", "--limit", "2")) == 2
    out = cli(*base, "--limit", "1")
    assert out.returncode == 0 and out.stdout.count(" id=") == 1 and out.stdout.endswith("7 dead letters, 1 shown\n")
    unreadable = next(e for e in dead_list(redis_url, prefix, "--table", q.name) if e["id"] == "2")
    assert unreadable["value"] == "{not json" and not unreadable["value_is_json"]
    assert dead_list(redis_url, prefix, "--error", "no such reason") == []


def test_helper_dead_entries_match_the_listing(r, redis_url, dsn, prefix, t):
    Syncwd(r, prefix=prefix).update(t, {"id": 7, "score": 0})
    FastDrainer(r, dsn, prefix=prefix).drain()
    [entry] = dead_list(redis_url, prefix)
    assert dead_entries(r, t.keys(t.partition("7"), prefix))["7"]["error"] == entry["error"]
