"""Dead-letter limits (deadlimits.py): --dead-letter-max, --dead-letter-max-age
on drain and schedule, and dead-letter purge --older-than."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from syncwd_fast import FastDrainer, Syncwd, Table, purge_dead_letters
from syncwd_fast.cli import main
from syncwd_fast.deadlimits import DeadLetterLimits
from syncwd_fast.errors import ConfigurationError

from .helpers import cli, count, dead_of, last_json


@pytest.fixture
def t(db: Any, schema: str) -> Table:
    db.execute(f"CREATE TABLE {schema}.d (id int PRIMARY KEY, score int CHECK (score > 0))")
    return Table(f"{schema}.d", partitions=2, ttl=120)


def write(r: Any, prefix: str, t: Table, good: range, bad: range) -> None:
    Syncwd(r, prefix=prefix).update_many(
        t, [{"id": i, "score": 1} for i in good] + [{"id": i, "score": -1} for i in bad]
    )


def age(r: Any, t: Table, prefix: str, record_id: int, seconds: float) -> None:
    """Make ``record_id``'s dead letter look ``seconds`` old."""
    keys = t.keys(t.partition(str(record_id)), prefix)
    entry = orjson.loads(r.hget(keys.dead, str(record_id)))
    r.hset(keys.dead, str(record_id), orjson.dumps({**entry, "at": time.time() - seconds}))


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_max_keeps_the_newest_per_table_and_counts_what_it_dropped(r, db, dsn, prefix, t):
    write(r, prefix, t, range(100, 110), range(0, 6))
    assert FastDrainer(r, dsn, prefix=prefix).drain().dead_lettered == 6
    for i in range(6):
        age(r, t, prefix, i, 6000 - i * 1000)  # 0 the oldest, 5 the newest
    write(r, prefix, t, range(110, 120), range(6, 8))
    kept, logger = Kept(), logging.getLogger("syncwd_fast")
    logger.addHandler(kept)  # the package's own logger (a CLI run may have stopped it propagating)
    try:
        report = FastDrainer(r, dsn, prefix=prefix, dead_letter_max=3).drain()
    finally:
        logger.removeHandler(kept)
    assert (report.upserted, report.dead_lettered) == (10, 2)
    assert report.dead_letters_dropped == 5 and report.tables[t.name].dead_letters_dropped == 5
    assert report.to_dict()["dead_letters_dropped"] == 5
    assert report.to_dict()["tables"][t.name]["dead_letters_dropped"] == 5
    assert sorted(map(int, dead_of(r, t, prefix))) == [5, 6, 7]  # across both partitions
    assert count(db, t.name) == 20  # every record that was no dead letter landed
    assert any(f"{t.name}: 5 dead letters dropped for good" in m for m in kept.messages), kept.messages
    # A dropped record's value gets the cache TTL, as a purge gives it.
    keys = t.keys(t.partition("0"), prefix)
    assert 0 < r.ttl(keys.value("0")) <= 120
    # Under the limit: nothing more goes.
    assert FastDrainer(r, dsn, prefix=prefix, dead_letter_max=3).drain().dead_letters_dropped == 0


def test_max_age_drops_only_the_old_and_sees_entries_age_later(r, db, dsn, prefix, t):
    write(r, prefix, t, range(100, 105), range(0, 4))
    FastDrainer(r, dsn, prefix=prefix).drain()
    age(r, t, prefix, 0, 7200)
    age(r, t, prefix, 1, 1800)
    limits = DeadLetterLimits(max_age=3600)
    assert limits.trim(r, t, prefix, time.time()) == 1
    assert sorted(map(int, dead_of(r, t, prefix))) == [1, 2, 3]
    assert limits.trim(r, t, prefix, time.time()) == 0
    # The same limits an hour on (a long-running schedule): 1 is old now too.
    assert limits.trim(r, t, prefix, time.time() + 1900) == 1
    assert limits.trim(r, t, prefix, time.time() + 7200) == 2  # and then the rest
    assert dead_of(r, t, prefix) == {}


def test_a_dead_letter_made_again_since_the_trim_read_is_kept(r, dsn, prefix, t, monkeypatch):
    write(r, prefix, t, range(0), range(0, 2))
    FastDrainer(r, dsn, prefix=prefix).drain()
    age(r, t, prefix, 0, 7200)
    age(r, t, prefix, 1, 7200)
    from syncwd_fast import deadletter

    real = deadletter.purge_partition

    def made_again_first(client: Any, table: Table, keys: Any, ids: Any, at_most: Any) -> int:
        for record_id in ids:  # a retry failed again meanwhile: a new entry, made now
            entry = orjson.loads(client.hget(keys.dead, record_id))
            client.hset(keys.dead, record_id, orjson.dumps({**entry, "at": time.time()}))
        return real(client, table, keys, ids, at_most)

    monkeypatch.setattr(deadletter, "purge_partition", made_again_first)
    assert DeadLetterLimits(max_age=3600).trim(r, t, prefix, time.time()) == 0
    assert sorted(dead_of(r, t, prefix)) == ["0", "1"]


def test_limits_must_make_sense(r, dsn):
    for bad in ({"dead_letter_max": 0}, {"dead_letter_max_age": 0}, {"dead_letter_max_age": -5.0}):
        with pytest.raises(ConfigurationError):
            FastDrainer(r, dsn, **bad)
    assert not DeadLetterLimits()


def test_cli_options_and_variables(r, db, redis_url, dsn, prefix, t):
    write(r, prefix, t, range(100, 103), range(0, 4))
    FastDrainer(r, dsn, prefix=prefix).drain()
    age(r, t, prefix, 0, 90_000)  # over a day
    base = ["drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--json"]
    done = CliRunner().invoke(main, base, env={"SYNCWD_DEAD_LETTER_MAX_AGE": "1d"})
    assert done.exit_code == 0, done.output
    assert last_json(done.stdout)["dead_letters_dropped"] == 1
    done = CliRunner().invoke(main, [*base, "--dead-letter-max", "2"])
    report = last_json(done.stdout)
    assert report["dead_letters_dropped"] == 1 and report["tables"][t.name]["dead_letters_dropped"] == 1
    assert len(dead_of(r, t, prefix)) == 2
    done = CliRunner().invoke(main, [*base, "--dead-letter-max-age", "soon"])
    assert done.exit_code == 2 and "invalid duration 'soon'" in done.output
    done = CliRunner().invoke(main, [*base, "--dead-letter-max", "0"])
    assert done.exit_code == 2


def test_schedule_and_purge_older_than_in_subprocesses(r, db, redis_url, dsn, prefix, t):
    write(r, prefix, t, range(100, 102), range(0, 5))
    FastDrainer(r, dsn, prefix=prefix).drain()
    for i, seconds in enumerate((10 * 86400, 3 * 86400, 3600)):
        age(r, t, prefix, i, seconds)

    out = cli("dead-letter", "purge", "--redis", redis_url, "--prefix", prefix, "--older-than", "2d", "--yes")
    assert out.returncode == 0 and "2 dead letters purged" in out.stdout, out.stderr
    assert sorted(map(int, dead_of(r, t, prefix))) == [2, 3, 4]
    assert purge_dead_letters(r, prefix=prefix, ids=["2"], older_than=7200) == 0  # an hour old: kept

    write(r, prefix, t, range(102, 104), range(0))
    schedule = ["schedule", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--every", "1s"]
    out = cli(*schedule, "--max-runs", "1", "--json", env={"SYNCWD_DEAD_LETTER_MAX": "1"})
    report = last_json(out.stdout)
    assert out.returncode == 0 and report["upserted"] == 2 and report["dead_letters_dropped"] == 2, out.stderr
    assert "2 dead letters dropped for good" in out.stderr
    assert sorted(map(int, dead_of(r, t, prefix))) in ([3], [4])  # the newest (3 and 4 made at once)
    assert count(db, t.name) == 4
