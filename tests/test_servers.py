"""The throwaway servers the demo and the tests fall back on."""

import psycopg
import redis

from syncwd_fast.servers import PostgresServer, RedisServer, find_or_start, postgres_reachable, redis_reachable


def test_throwaway_redis_and_postgres_start_restart_and_clean_up():
    with RedisServer(appendonly=True) as rs, PostgresServer() as pg:
        client = redis.Redis.from_url(rs.url)
        client.set("k", "v")
        rs.restart()  # AOF on: the data survives
        assert redis.Redis.from_url(rs.url).get("k") == b"v"
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int)")
        pg.restart()
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        dirs = (rs.dir, pg.dir)
    assert not redis_reachable(rs.url) and not postgres_reachable(pg.dsn)
    import os

    assert not any(os.path.exists(d) for d in dirs)


def test_given_servers_are_used_as_they_are(redis_url, base_dsn):
    url, dsn, started = find_or_start(redis_url, base_dsn)
    assert (url, dsn, started) == (redis_url, base_dsn, [])
