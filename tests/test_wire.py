"""The drain's hot round trips as packed commands (syncwd_fast/wire.py),
against a real Redis: which clients take that way, replies and error
replies in order, a connection error retried as the client's Retry says, a
decode_responses client, and the scripts' NOSCRIPT fallback through it."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, NoScriptError, ResponseError
from redis.retry import Retry

from syncwd_fast import scripts
from syncwd_fast.keys import PartitionKeys
from syncwd_fast.wire import Wire, pack


def test_pack_is_the_redis_protocol_of_bytes_str_and_int() -> None:
    assert pack(b"SET", "k\u00e9", 12) == b"*3\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$2\r\n12\r\n"


def test_only_a_plain_utf8_client_with_a_pool_takes_the_wire(redis_url: str) -> None:
    plain = redis_lib.Redis.from_url(redis_url)
    wire = Wire.of(plain)
    assert wire is not None and wire.pool is plain.connection_pool
    assert Wire.of(plain) is wire  # decided once per client
    single = redis_lib.Redis.from_url(redis_url, single_connection_client=True)
    latin = redis_lib.Redis.from_url(redis_url, encoding="latin-1")
    assert Wire.of(single) is None and Wire.of(latin) is None
    assert Wire.of(redis_lib.Redis.from_url(redis_url, encoding="UTF-8")) is not None

    class Subclass(redis_lib.Redis):  # may route or wrap commands: redis-py carries them
        pass

    assert Wire.of(Subclass.from_url(redis_url)) is None
    for client in (plain, single, latin):
        client.close()


def test_replies_come_back_in_order_with_error_replies_in_their_place(r: Any, prefix: str) -> None:
    wire = Wire.of(r)
    assert wire is not None
    key = f"{prefix}:list"
    r.rpush(key, b"a")
    got = wire.send(
        pack(b"SET", f"{prefix}:s", b"v")
        + pack(b"GET", key)  # the wrong type: an error reply
        + pack(b"EVALSHA", "0" * 40, 0)  # NOSCRIPT
        + pack(b"MGET", f"{prefix}:s", f"{prefix}:missing"),
        4,
    )
    assert got[0] == b"OK"
    assert isinstance(got[1], ResponseError) and "WRONGTYPE" in str(got[1])
    assert isinstance(got[2], NoScriptError)
    assert got[3] == [b"v", None]
    # Every reply was read: the connection serves the next caller.
    assert wire.send(pack(b"PING"), 1) == [b"PONG"]


def _killed_while_waiting(redis_url: str, r: Any, retries: int, name: str) -> list[Any]:
    """A BLPOP of 0.5 s on a connection the server closes 0.2 s in, sent
    through the wire of a client whose Retry allows ``retries``."""
    client = redis_lib.Redis.from_url(redis_url, retry=Retry(NoBackoff(), retries))
    wire = Wire.of(client)
    assert wire is not None
    assert wire.send(pack(b"CLIENT", b"SETNAME", name), 1) == [b"OK"]

    def kill() -> None:
        for entry in r.client_list():
            if entry.get("name") == name:
                r.client_kill_filter(_id=entry["id"])

    timer = threading.Timer(0.2, kill)
    timer.start()
    try:
        return wire.send(pack(b"BLPOP", f"{name}:none", b"0.5"), 1)
    finally:
        timer.join()
        client.close()


def test_a_connection_closed_mid_call_is_retried_as_the_clients_retry_says(redis_url: str, r: Any, prefix: str) -> None:
    assert _killed_while_waiting(redis_url, r, 2, f"{prefix}-retried") == [None]
    with pytest.raises(ConnectionError):
        _killed_while_waiting(redis_url, r, 0, f"{prefix}-once")


def test_a_decode_responses_client_gets_text(redis_url: str, prefix: str) -> None:
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    wire = Wire.of(client)
    assert wire is not None
    assert wire.send(pack(b"SET", f"{prefix}:t", "\u00e9") + pack(b"GET", f"{prefix}:t"), 2)[1] == "\u00e9"
    client.close()


def test_a_script_call_after_script_flush_loads_the_script_again(private_redis: Any) -> None:
    r = redis_lib.Redis.from_url(private_redis.url)
    keys = PartitionKeys("p", "wire_t", 0)
    assert scripts.lease(r, keys, "acquire", "tok", 5000, "me")
    r.script_flush()
    assert scripts.lease(r, keys, "renew", "tok", 5000)
    assert r.script_exists(scripts.script("lease").sha) == [True]


def test_calls_in_a_held_block_share_one_connection_given_back_at_its_end(redis_url: str, r: Any) -> None:
    client = redis_lib.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 1))
    wire = Wire.of(client)
    assert wire is not None
    pool = client.connection_pool
    with wire.held():
        ids = {wire.send(pack(b"CLIENT", b"ID"), 1)[0] for _ in range(5)}
        with wire.held():  # nested: the same connection
            ids.add(wire.send(pack(b"CLIENT", b"ID"), 1)[0])
        assert len(ids) == 1 and len(pool._in_use_connections) == 1
        # Closed by the server mid-block: the next call reconnects (the Retry).
        r.client_kill_filter(_id=ids.pop())
        assert wire.send(pack(b"ECHO", b"again"), 1) == [b"again"]
    assert not pool._in_use_connections
    with pytest.raises(RuntimeError), wire.held():
        wire.send(pack(b"PING"), 1)
        raise RuntimeError("a failure in the block")
    assert not pool._in_use_connections
    client.close()


def test_a_pool_that_wants_a_command_name_gets_one(redis_url: str) -> None:
    """redis-py before 5.1: get_connection(command_name, *keys, **options)."""
    named: list[str] = []

    class OldPool(redis_lib.ConnectionPool):
        def get_connection(self, command_name, *keys, **options):  # type: ignore[no-untyped-def,override]
            named.append(command_name)
            return super().get_connection()

    pool = OldPool.from_url(redis_url)
    wire = Wire(pool)
    assert wire.send(pack(b"ECHO", b"x"), 1) == [b"x"]
    with wire.held():
        assert wire.send(pack(b"ECHO", b"y"), 1) == [b"y"]
    assert named == ["EVALSHA", "EVALSHA"]
    assert Wire(redis_lib.ConnectionPool.from_url(redis_url))._get_args == ()  # this redis-py: no name, no warning
    pool.disconnect()


def test_a_small_or_blocking_pool_lends_a_connection_per_call(redis_url: str) -> None:
    """A held connection could leave the heartbeat waiting on a pool that can
    run short: such a pool lends one per call, held block or not."""
    for pool in (
        redis_lib.BlockingConnectionPool.from_url(redis_url, max_connections=4),
        redis_lib.ConnectionPool.from_url(redis_url, max_connections=8),  # small
    ):
        wire = Wire(pool)
        with wire.held():
            assert wire.send(pack(b"PING"), 1) == [b"PONG"]
            assert getattr(wire._held, "conn", None) is None  # none held: one lent per call
        pool.disconnect()
    assert Wire(redis_lib.ConnectionPool.from_url(redis_url))._may_hold  # redis-py's default pool (100)
