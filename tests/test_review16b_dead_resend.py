"""Review 16b: a dead-letter call whose reply is lost is sent again by
``Wire.send`` under the client's Retry (on the ack thread's held connection).
dead.lua then finds the entry its first run wrote and counts the record's
attempts up: a record that failed once is reported as failed twice.

Expected: ``attempts`` is 1 for a record dead-lettered once (the resent call
carries the same ``at`` and ``run`` as the first, so it can tell)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson

from syncwd_fast import FastDrainer, Syncwd, Table, scripts
from syncwd_fast.connection import redis_from_url

from .proxy import FaultProxy


def test_a_lost_dead_letter_reply_does_not_count_a_second_attempt(
    r: Any, redis_url: str, base_dsn: str, prefix: str, schema: str, db: Any
) -> None:
    db.execute(f"CREATE TABLE {schema}.t (id int PRIMARY KEY, v int)")
    table = Table(f"{schema}.t", partitions=1, ttl=100)
    # one record in 50 cannot land (v is not an int): two dead letters a batch
    Syncwd(r, prefix=prefix).update_many(table, [{"id": i, "v": i if i % 50 else "bad"} for i in range(1000)])
    url = urlsplit(redis_url)
    with FaultProxy(url.hostname or "127.0.0.1", url.port or 6379) as proxy:
        client = redis_from_url(f"redis://{'127.0.0.1'}:{proxy.port}{url.path or '/0'}")
        # the first dead.lua call runs on the server; its reply is dropped
        proxy.cut_after_reply(scripts.script("dead").sha.encode())
        report = FastDrainer(client, base_dsn, prefix=prefix, batch=100).drain()
        client.close()
        assert proxy.replies_dropped == 1
    keys = table.keys(0, prefix)
    dead = {k.decode(): orjson.loads(v) for k, v in r.hgetall(keys.dead).items()}
    assert report.dead_lettered == 20 and len(dead) == 20
    assert db.execute(f"SELECT count(*) FROM {schema}.t").fetchone()[0] == 980
    twice = {rid: e["attempts"] for rid, e in dead.items() if e["attempts"] != 1}
    assert not twice, f"records dead-lettered once report more attempts: {twice}"
