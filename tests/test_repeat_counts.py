"""The report's counts across a Redis restart mid-drain: the pass over the
run set that repeats after Redis comes back counts only what it merges for
the first time (records that landed before are found by their acks' TTL or
their tombstones' absence, or are this drainer's own batches in flight), and
says how many it found landed already and how many it merged."""

from __future__ import annotations

import pytest
import redis as redis_lib

from syncwd_fast import FastDrainer, Syncwd, Table

from .helpers import rows


@pytest.mark.parametrize("ttl", [3600, 0])
def test_a_repeated_pass_after_a_restart_counts_each_record_once(persistent_redis, db, dsn, schema, ttl):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL)")
    for i in range(3000, 3300):
        db.execute(f"INSERT INTO {schema}.p VALUES ({i}, 0)")
    t = Table(f"{schema}.p", ttl=ttl)
    client = redis_lib.Redis.from_url(persistent_redis.url)
    writer = Syncwd(client)
    writer.update_many(t, [{"id": i, "v": i} for i in range(3000)])
    for i in range(3000, 3300):
        writer.delete(t, {"id": i})
    restarted: list[int] = []

    def on_batch(*_):
        restarted.append(0)
        if len(restarted) == 12:  # a third of the way in
            persistent_redis.restart(kill=True)  # kill -9: the next pass is a repeat

    drainer = FastDrainer(client, dsn, batch=100, retry_backoff=0.05)
    drainer.options.on_batch = on_batch
    report = drainer.drain()
    assert len(restarted) > 12 and report.exit_code == 0, report.to_dict()
    assert rows(db, t.name) == [(i, i) for i in range(3000)]
    if ttl:
        # Every record counted once: those merged before the restart were
        # found landed by their acks' TTL (or their tombstones gone).
        assert (report.upserted, report.deleted, report.skipped) == (3000, 300, 0), report.to_dict()
        assert report.already_landed >= 1000 and report.repeated <= 3300 - 1000, report.to_dict()
    else:
        # Without a TTL an ack leaves no trace on a value: the pass merges
        # them again, and the report says how many it merged (an upper bound
        # of those counted twice).
        assert report.deleted == 300 and report.skipped == 0, report.to_dict()
        assert 3000 < report.upserted <= 3000 + report.repeated and report.repeated >= 1000, report.to_dict()
    assert "repeated pass" in report.summary()
