"""The drain's hot Redis round trips (a pop with the MGET of the previous
pop's values, an ack) as commands packed once by hiredis and sent on a
connection of the client's own pool.

Through redis-py's command methods each of those round trips cost the drain
process 60-100 us of CPU more than the packed bytes do (an encoder call per
argument, and per call the retry, observability and response-callback
layers): about 0.8 us per drained row at 125 ids a call. What stays is what
keeps a call right: the pool's connections (and their health checks), its
parser (error replies become redis-py's exceptions, NOSCRIPT included), and
its Retry on a connection error, as redis-py's own pipeline has them.

Only a plain ``redis.Redis`` (no single-connection client, UTF-8 encoding)
goes this way when hiredis is installed: a cluster client routes and
redirects commands itself, and keeps redis-py's path.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis
from redis.exceptions import ResponseError

hiredis: Any
try:
    import hiredis
except ImportError:  # redis without its hiredis extra: every call goes through redis-py
    hiredis = None

_wires: weakref.WeakKeyDictionary[Any, Wire | None] = weakref.WeakKeyDictionary()


@contextmanager
def held(client: Any) -> Iterator[None]:
    """``Wire.held`` of ``client``'s wire; nothing where it has none."""
    wire = Wire.of(client)
    if wire is None:
        yield
    else:
        with wire.held():
            yield


def _needs_command_name(pool: Any) -> bool:
    try:
        first = next(iter(inspect.signature(pool.get_connection).parameters.values()), None)
    except (TypeError, ValueError):
        return False
    return first is not None and first.default is inspect.Parameter.empty and first.kind != first.VAR_POSITIONAL


def pack(*args: bytes | str | int) -> bytes:
    """One command in the Redis protocol (str as UTF-8, int as its digits)."""
    return hiredis.pack_command(args)  # type: ignore[no-any-return]


class Wire:
    """Round trips of packed commands on ``pool``'s connections."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._held = threading.local()  # a connection this thread keeps for a run of calls (``held``)
        # redis-py before 5.1 wants a command name (unused) to get a connection; later ones warn when given one
        self._get_args: tuple[str, ...] = ("EVALSHA",) if _needs_command_name(pool) else ()
        # Held connections only from a pool that does not make a caller wait and is not
        # small: from a blocking one, the lease's heartbeat could wait for a connection a
        # batch holds (a drainer holds two per partition drained at once).
        self._may_hold = (
            not isinstance(pool, redis.BlockingConnectionPool) and (getattr(pool, "max_connections", 0) or 0) >= 32
        )

    def _connection(self) -> Any:
        return self.pool.get_connection(*self._get_args)

    @contextmanager
    def held(self) -> Iterator[None]:
        """This thread's calls in the block share one connection of the pool,
        taken once and given back at the end (a batch's 40 pops or acks:
        taking and returning one per call, a poll of its socket each time,
        cost more than a tenth of the drain process's CPU)."""
        if not self._may_hold or getattr(self._held, "conn", None) is not None:  # or already held further up
            yield
            return
        self._held.conn = self._connection()
        try:
            yield
        finally:
            conn, self._held.conn = self._held.conn, None
            self.pool.release(conn)

    @classmethod
    def of(cls, client: Any) -> Wire | None:
        """The wire of ``client``, or None where redis-py must carry its calls."""
        try:
            return _wires[client]
        except (KeyError, TypeError):
            pass
        wire = None
        pool = getattr(client, "connection_pool", None)
        if (
            hiredis is not None
            and type(client) is redis.Redis
            and pool is not None
            and getattr(client, "connection", None) is None  # single_connection_client: its lock, its connection
            and str(pool.connection_kwargs.get("encoding", "utf-8")).lower().replace("-", "") == "utf8"
        ):
            wire = cls(pool)
        try:
            _wires[client] = wire
        except TypeError:  # not weak-referenceable: decided again next time
            pass
        return wire

    def send(self, packed: bytes, replies: int) -> list[Any]:
        """Send ``packed`` (``replies`` commands) and read their replies; an
        error reply is returned in its place, as a pipeline does with
        ``raise_on_error=False``. A connection error is retried as the
        client's Retry says (the connection closed first)."""
        held = getattr(self._held, "conn", None)
        conn = held if held is not None else self._connection()
        try:
            return conn.retry.call_with_retry(  # type: ignore[no-any-return]
                lambda: self._round_trip(conn, packed, replies), lambda _error: conn.disconnect()
            )
        finally:
            if held is None:
                self.pool.release(conn)

    @staticmethod
    def _round_trip(conn: Any, packed: bytes, replies: int) -> list[Any]:
        conn.send_packed_command([packed])
        out: list[Any] = []
        try:
            for _ in range(replies):
                try:
                    out.append(conn.read_response())
                except ResponseError as exc:
                    out.append(exc)
        except BaseException:
            # Replies may be left on the socket: never hand it to the next caller.
            conn.disconnect()
            raise
        return out
