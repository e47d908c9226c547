"""Review of 01d8401: odd ids and values written by another client straight
into the documented key layout, through a whole drain on the wire path."""

from __future__ import annotations

from typing import Any

import orjson
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from syncwd_fast import FastDrainer, Syncwd, Table


def _odd(r: Any, table: Table, prefix: str) -> dict[bytes, bytes | None]:
    records: dict[bytes, bytes | None] = {
        b"a\x00b": b'{"id": "a\\u0000b", "v": 1}',
        b"\xff\xfe": b'{"id": "x", "v": 2}',
        b"~": b'{"id": "~", "v": 3}',
        b"\xc3\xa9": '{"id": "\u00e9", "v": 4}'.encode(),
        b"nl": b'{"id": "nl", "v": 5, "s": "x\\n~y"}',
        b"nl2": b'{"id": "nl2", "v": 6, "s": "x\n~y"}',
        b"tomb": b'~{"id": "tomb"}',
        b"gone": None,
        b"plain": b'{"id": "plain", "v": 7}',
    }
    keys = table.keys(0, prefix)
    for rid, value in records.items():
        if value is not None:
            r.set(keys.value_prefix.encode() + rid, value)
        r.sadd(keys.dirty, rid)
    return records


def test_odd_ids_and_values_through_a_whole_drain(r: Any, db: Any, dsn: str, prefix: str, schema: str) -> None:
    db.execute(f"CREATE TABLE {schema}.odd (id text PRIMARY KEY, v int, s text)")
    db.execute(f"INSERT INTO {schema}.odd VALUES ('tomb', 0, NULL)")
    table = Table(f"{schema}.odd", partitions=1)
    Syncwd(r, prefix=prefix).update(table, {"id": "seed", "v": 0})
    _odd(r, table, prefix)
    client = redis_lib.Redis.from_url(
        r.connection_pool.connection_kwargs.get("host")
        and f"redis://{r.connection_pool.connection_kwargs['host']}:"
        f"{r.connection_pool.connection_kwargs['port']}/{r.connection_pool.connection_kwargs.get('db', 0)}",
        retry=Retry(NoBackoff(), 0),
    )
    report = FastDrainer(client, dsn, prefix=prefix, batch=3).drain()
    rows = dict(db.execute(f"SELECT id, v FROM {schema}.odd").fetchall())
    dead = {
        k.decode("utf-8", "surrogateescape"): orjson.loads(v) for k, v in r.hgetall(table.keys(0, prefix).dead).items()
    }
    keys = table.keys(0, prefix)
    assert r.scard(keys.dirty) == 0
    landed = set(rows) | set(dead)
    for rid in ("~", "\u00e9", "nl", "plain", "seed"):
        assert rid in rows, (rid, rows, dead)
    assert "tomb" not in rows
    assert report.deleted == 1
    assert len(client.connection_pool._in_use_connections) == 0
    client.close()
    print(report, rows, {k: v["error"] for k, v in dead.items()}, landed)


def test_workers_share_one_pool_without_leaking(r: Any, db: Any, dsn: str, prefix: str, schema: str) -> None:
    """Many partitions, four workers, one client: every row lands and every
    connection taken from the pool is given back, also by a drain that fails
    on a missing table."""
    db.execute(f"CREATE TABLE {schema}.many (id bigint PRIMARY KEY, v int)")
    table = Table(f"{schema}.many", partitions=16)
    missing = Table(f"{schema}.nowhere", partitions=4)
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(table, [{"id": i, "v": i} for i in range(3000)])
    sw.update_many(missing, [{"id": i, "v": i} for i in range(50)])
    kw = r.connection_pool.connection_kwargs
    client = redis_lib.Redis(host=kw["host"], port=kw["port"], db=kw.get("db", 0))
    report = FastDrainer(client, dsn, prefix=prefix, batch=100, workers=4).drain()
    assert report.exit_code == 1
    assert db.execute(f"SELECT count(*), sum(v) FROM {schema}.many").fetchone() == (3000, sum(range(3000)))
    assert report.tables[table.name].upserted == 3000
    assert len(client.connection_pool._in_use_connections) == 0
    assert len(client.connection_pool._available_connections) <= 16
    client.close()
