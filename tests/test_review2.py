"""Adversarial review of the one-pass read of the run set (no SREM): each test
is a defect found, against real servers."""

from __future__ import annotations

import random

import pytest

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.deadletter import purge_dead

from .helpers import dead_entries, rows

N = 600  # ints past 512: the run set is a hash table, read in several pops


@pytest.fixture
def fk(db, schema):
    """Parents 0..N-1, each with a child row: deleting a parent fails (FK)."""
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int, w int)")
    db.execute(f"CREATE TABLE {schema}.c (pid int REFERENCES {schema}.p (id))")
    db.execute(f"INSERT INTO {schema}.p SELECT i, i, 7 FROM generate_series(0, {N - 1}) i")
    db.execute(f"INSERT INTO {schema}.c SELECT i FROM generate_series(0, {N - 1}) i")
    return Table(f"{schema}.p")


def test_a_dead_letter_purged_mid_pass_is_forgotten_whole(r, db, dsn, prefix, fk):
    """A delete refused by PostgreSQL (a child row references it) is
    dead-lettered; the drain stops mid-run (or is still reading the run), and
    the operator purges the dead letter: the delete is dropped. The id is
    still in the run set (ids stay there until the run ends), so purge takes
    it for a newer value not read yet: the tombstone mark stays, and the
    application's next update of the row is made a new row after a delete:
    the drain deletes the row again (refused again: a false dead letter) and
    the purged tombstone's value never gets a TTL."""
    sw = Syncwd(r, prefix=prefix)
    for i in range(N):
        sw.delete(fk, i)
    keys = fk.keys(0, prefix)
    drainer = FastDrainer(r, dsn, prefix=prefix, batch=100)
    drainer.options.on_batch = lambda *_: drainer.request_stop("test")  # stop after the first batch
    report = drainer.drain()
    assert report.interrupted and 0 < report.dead_lettered < N
    assert r.hget(keys.meta, "cursor") != b"done"  # the drain stopped mid-pass
    x = sorted(dead_entries(r, keys))[0]
    assert purge_dead(r, prefix, ids=[x]) == 1  # the delete of x is dropped
    ttl = r.ttl(keys.value(x))

    report = FastDrainer(r, dsn, prefix=prefix).drain()  # the rest of the run: refused deletes
    assert x not in dead_entries(r, keys)
    sw.update(fk, {"id": int(x), "v": -1})  # the application updates the row it still has
    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert x not in dead_entries(r, keys), "an update of a purged delete was made a delete again"
    assert rows(db, fk.name, "id")[int(x)] == (int(x), -1, 7)
    assert ttl > 0, "the purged value got no TTL"


def _chaos(private_redis, db, dsn, schema, restarts, seed):
    """A writer updating, deleting and recreating rows while a drain runs and
    Redis (AOF, fsync always) is killed and restarted mid-run ``restarts`` times;
    then a last drain. PostgreSQL must hold every id's last value."""
    import random
    import threading
    import time

    import redis as redis_lib

    db.execute(f"CREATE TABLE {schema}.q (id int PRIMARY KEY, v int NOT NULL, w int DEFAULT 5)")
    t = Table(f"{schema}.q")
    client = redis_lib.Redis.from_url(private_redis.url)
    sw = Syncwd(client)
    rng = random.Random(seed)
    ids = 2000
    model: dict[int, int | None] = {}
    sw.update_many(t, [{"id": i, "v": 0} for i in range(ids)])
    model.update({i: 0 for i in range(ids)})
    for i in range(0, ids, 5):
        sw.delete(t, i)
        model[i] = None
    stop = threading.Event()

    def writer():
        w = Syncwd(redis_lib.Redis.from_url(private_redis.url))
        n = 0
        while not stop.is_set():
            n += 1
            i = rng.randrange(ids)
            value = None if rng.random() < 0.3 else n
            while True:
                try:
                    if value is None:
                        w.delete(t, i)
                    else:
                        w.update(t, {"id": i, "v": value})
                    break
                except redis_lib.exceptions.RedisError:
                    time.sleep(0.05)
            model[i] = value
            time.sleep(0.0005)

    batches = []

    def on_batch(*_):
        batches.append(1)
        if len(batches) in restarts:
            private_redis.restart(kill=True)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        report = FastDrainer(client, dsn, batch=100, on_batch=on_batch, retry_backoff=0.2, retries=20).drain()
    finally:
        stop.set()
        thread.join()
    assert report.exit_code in (0, 1), report.to_dict()
    last = FastDrainer(client, dsn).drain()
    keys = t.keys(0, "syncwd")
    assert dead_entries(client, keys) == {}
    assert (last.exit_code, last.dead_lettered) == (0, 0), last.to_dict()
    got = {i: v for i, v, _ in rows(db, t.name, "id")}
    want = {i: v for i, v in model.items() if v is not None}
    assert got == want, (len(got), len(want), [(i, got.get(i), want.get(i)) for i in set(got) ^ set(want)][:5])
    for i in want:
        assert client.ttl(keys.value(str(i))) > 0


@pytest.mark.parametrize("restarts", [(3,), (2, 6), (1, 2, 3)])
def test_writers_racing_a_drain_through_redis_restarts(db, dsn, schema, restarts):
    from syncwd_fast.servers import RedisServer

    with RedisServer(appendonly=True) as server:
        _chaos(server, db, dsn, schema, restarts, seed=len(restarts))


def test_a_repeat_pass_acks_an_id_that_is_not_utf8(private_redis, db, dsn, schema):
    """Another client marked a record dirty under an id that is not UTF-8 and
    no value (the drain dead-letters it: "vanished"). Redis restarts mid-run:
    the repeat pass reads the id again, its value is missing, so it is done
    and named as kept in the ack, as text with surrogates: redis-py cannot
    encode it, the ack raises, and every drain after that fails the same way
    on this run (nothing of it lands: the partition is stuck)."""
    import redis as redis_lib

    from syncwd_fast import scripts

    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL)")
    t = Table(f"{schema}.p")
    client = redis_lib.Redis.from_url(private_redis.url)
    Syncwd(client).update_many(t, [{"id": i, "v": i} for i in range(3000)])
    keys = t.keys(0, "syncwd")
    # Twenty such ids: the first met must come before the pass ends (one id
    # alone falls in the set's last chunk for about one hash seed in twelve).
    odd = {b"\xff\xfe%d" % k for k in range(20)}
    client.sadd(keys.dirty, *odd)  # no values
    assert scripts.lease(client, keys, "acquire", "first", 60_000)
    run = scripts.snapshot(client, keys, "first", "R").run
    texts = {o.decode("utf-8", "surrogateescape") for o in odd}
    while True:  # a first drainer reads until it meets an odd id, then dead-letters those it met
        p = scripts.pop(client, keys, run, "first", 250, 60_000)
        met = texts.intersection([*p.ids, *p.done])
        if met:
            break
    assert client.hget(keys.meta, "cursor") != b"done"
    scripts.dead(client, keys, run, "first", [(gone, "vanished") for gone in met], pops=[n for n, _ in p.pops])
    scripts.lease(client, keys, "release", "first")
    client.save()
    private_redis.restart(kill=True)  # from the RDB saved mid-run: the next pass is a repeat
    client = redis_lib.Redis.from_url(private_redis.url)
    report = FastDrainer(client, dsn, retries=1, retry_backoff=0.01).drain()
    assert report.exit_code in (0, 1), report.to_dict()
    assert rows(db, t.name) == [(i, i) for i in range(3000)]
    assert client.hget(keys.meta, "run") is None  # the run is over


def test_a_repeat_pass_keeps_the_dead_letter_of_a_value_that_vanished(private_redis, db, dsn, schema):
    """A dirty value vanished (evicted under maxmemory, deleted by hand): the
    drain dead-letters its id ("value missing"), the only trace of the lost
    record. Redis restarts mid-run: the repeat pass reads the id again, finds
    no value, takes it for done, and its ack removes the dead letter as if the
    record had landed."""
    import redis as redis_lib

    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL)")
    t = Table(f"{schema}.p")
    client = redis_lib.Redis.from_url(private_redis.url)
    Syncwd(client).update_many(t, [{"id": i, "v": i} for i in range(3000)])
    keys = t.keys(0, "syncwd")
    drainer = FastDrainer(client, dsn, batch=100)
    lost: list[str] = []
    dead_at_restart: set[str] = set()

    def on_batch(*_):
        if not lost:  # values still to be read vanish, and are dead-lettered
            # Twenty, picked at random: one alone may already be in flight
            # (popped and read ahead of the merge), and then lands instead.
            unread = [i.decode() for i in client.smembers(keys.run(client.hget(keys.meta, "run").decode()))]
            unacked = [i for i in unread if client.exists(keys.value(i)) and client.ttl(keys.value(i)) == -1]
            lost.extend(random.Random(7).sample(sorted(unacked), 20))
            client.delete(*(keys.value(x) for x in lost))
        elif not dead_at_restart:
            dead_at_restart.update(set(lost) & set(dead_entries(client, keys)))
            if dead_at_restart:
                client.save()
                private_redis.restart(kill=True)  # mid-run: the next pass is a repeat

    drainer.options.on_batch = on_batch
    report = drainer.drain()
    assert dead_at_restart and report.exit_code in (0, 1), report.to_dict()
    FastDrainer(redis_lib.Redis.from_url(private_redis.url), dsn).drain()
    client = redis_lib.Redis.from_url(private_redis.url)
    assert client.hget(keys.meta, "run") is None
    gone = dead_at_restart - set(dead_entries(client, keys))
    assert not gone, f"the dead letters of lost records were removed: {gone}"
