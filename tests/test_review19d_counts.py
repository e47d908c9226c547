"""Review 19d: counts across a Redis restart that persisted everything
(appendfsync always, kill -9). A record the version guard skipped is acked
with no TTL (ack.lua: kept ids: its value was not written), so the repeated
pass cannot tell it from a record never merged: it merges it again and
counts it skipped a second time. The review found the docs promising
otherwise; they now say so (architecture 7 "Counts"): upserted records are
counted once, skipped ones up to twice, within ``repeated``."""

from __future__ import annotations

import redis as redis_lib

from syncwd_fast import FastDrainer, Syncwd, Table

from .helpers import rows


def test_records_skipped_for_their_version_are_counted_within_repeated_across_a_restart(
    persistent_redis, db, dsn, schema
):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL, ver int NOT NULL)")
    # PostgreSQL holds a newer version of every odd id: those records are skipped.
    db.execute(f"INSERT INTO {schema}.p SELECT i, -1, 10 FROM generate_series(1, 2999, 2) i")
    t = Table(f"{schema}.p", version_column="ver", ttl=3600)
    client = redis_lib.Redis.from_url(persistent_redis.url)
    Syncwd(client).update_many(t, [{"id": i, "v": i, "ver": 1} for i in range(3000)])
    batches: list[int] = []

    def on_batch(*_):
        batches.append(0)
        if len(batches) == 12:  # a third of the way in
            persistent_redis.restart(kill=True)  # kill -9, nothing lost: the next pass is a repeat

    report = FastDrainer(client, dsn, batch=100, retry_backoff=0.05, on_batch=on_batch).drain()
    assert len(batches) > 12 and report.exit_code == 0, report.to_dict()
    assert rows(db, t.name) == [(i, -1 if i % 2 else i, 10 if i % 2 else 1) for i in range(3000)]
    assert report.upserted == 1500, report.to_dict()
    assert 1500 <= report.skipped <= 1500 + report.repeated and report.repeated < 3000, report.to_dict()
