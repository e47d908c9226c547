"""A small threaded TCP proxy for fault-injection tests.

``FaultProxy(host, port)`` listens on 127.0.0.1:<free port> and forwards every
connection to ``host:port``. Its behaviour can be switched while clients use it:

- ``passthrough()``  forward (the default mode, "pass");
- ``cut()``          close every open connection now (new ones are still accepted);
- ``delay(s)``       add ``s`` seconds of latency to every chunk forwarded (0 removes it);
- ``blackhole()``    keep accepting and keep connections open, but forward nothing in
                     either direction, not even a close: clients hang until their own
                     timeouts. Bytes already read wait in the proxy and flow again,
                     in order, after ``passthrough()``;
- ``refuse()``       close new connections at once (open ones keep working);
- ``cut_after_reply(pattern)``  one shot: the next request holding ``pattern`` reaches
                     the server, and its connection is cut as the reply comes back
                     (the reply is dropped): the server did the work, the client
                     never hears of it.

Use it as a context manager, or call ``close()``: every socket is closed and
every thread joined.

A user-space proxy differs from a real network partition in one way: the
proxy's kernel keeps acknowledging what clients send, so a black-holed link
trips no TCP-level timeout (``tcp_user_timeout``, keepalives) in the client.
Only an application-level deadline (a socket read timeout, a watchdog) ends
the wait, as it would behind pgbouncer or HAProxy stalled by a fault.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from typing import Any

PASS, BLACKHOLE, REFUSE = "pass", "blackhole", "refuse"
_TICK = 0.02  # how often an idle pump looks at the mode and the closing flag
_CHUNK = 65536


def _shutdown(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Link:
    """One client connection and its upstream connection, pumped by two threads."""

    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.doomed = False  # a request matched cut_after_reply: cut when its reply comes
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fault-proxy-link", daemon=True)

    def close(self) -> None:
        """Wake both pumps and make them end; the link thread closes the sockets."""
        self.closed.set()
        _shutdown(self.client)
        _shutdown(self.upstream)

    def _wait_while_blackholed(self) -> bool:
        """False when the link closed meanwhile."""
        while self.proxy.mode == BLACKHOLE:
            if self.closed.wait(_TICK):
                return False
        return not self.closed.is_set()

    def _run(self) -> None:
        back: threading.Thread | None = None
        try:
            # A black-holed link gets no upstream connection until it heals.
            if not self._wait_while_blackholed():
                return
            try:
                self.upstream = socket.create_connection(self.proxy.target, timeout=5)
            except OSError:
                return  # upstream down: the client sees its connection closed
            self.upstream.settimeout(None)
            if self.closed.is_set():
                return
            back = threading.Thread(
                target=self._pump, args=(self.upstream, self.client, False), name="fault-proxy-pump", daemon=True
            )
            back.start()
            self._pump(self.client, self.upstream, True)
        finally:
            self.close()
            if back is not None:
                back.join()
            self.client.close()
            if self.upstream is not None:
                self.upstream.close()
            self.proxy._forget(self)

    def _pump(self, src: socket.socket, dst: socket.socket, to_server: bool) -> None:
        try:
            while not self.closed.is_set():
                if not self._wait_while_blackholed():
                    return
                readable, _, _ = select.select([src], [], [], _TICK)
                if not readable or self.proxy.mode == BLACKHOLE:
                    continue
                data = src.recv(_CHUNK)
                if not data:
                    return  # EOF: the link closes both ways
                latency = self.proxy.latency
                if latency > 0 and self.closed.wait(latency):
                    return
                # Switched to the black hole meanwhile: hold the chunk until it heals.
                if not self._wait_while_blackholed():
                    return
                if not to_server and self.doomed:
                    self.proxy._fired()
                    return  # the reply is dropped and the link cut
                dst.sendall(data)
                self.proxy._count(len(data))
                if to_server and self.proxy._matches(data):
                    self.doomed = True
        except OSError:
            return
        finally:
            self.close()


class FaultProxy:
    """A TCP proxy on 127.0.0.1:<free port> to ``host:port`` with switchable faults."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self.host = "127.0.0.1"
        self.mode = PASS
        self.latency = 0.0
        self.accepted = 0  # connections accepted so far (refused ones included)
        self.forwarded = 0  # bytes forwarded so far, both directions
        self.replies_dropped = 0  # cut_after_reply faults that fired
        self._trigger: tuple[bytes, int] | None = None
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._threads: list[threading.Thread] = []
        self._closing = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, name="fault-proxy-accept", daemon=True)
        self._acceptor.start()

    # --- modes ----------------------------------------------------------------

    def passthrough(self) -> None:
        """Forward again (also heals a black hole: held bytes flow on, in order)."""
        self.mode = PASS

    def blackhole(self) -> None:
        self.mode = BLACKHOLE

    def refuse(self) -> None:
        self.mode = REFUSE

    def delay(self, seconds: float) -> None:
        self.latency = max(0.0, float(seconds))

    def cut(self) -> int:
        """Close every open connection now; returns how many were open."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()
        return len(links)

    def cut_after_reply(self, pattern: bytes, times: int = 1) -> None:
        """The next ``times`` requests holding ``pattern`` reach the server; each
        one's connection is cut when its reply comes back, the reply dropped."""
        with self._lock:
            self._trigger = (pattern, times)

    @property
    def active(self) -> int:
        """Connections open through the proxy right now."""
        with self._lock:
            return len(self._links)

    # --- life cycle -----------------------------------------------------------

    def close(self) -> None:
        self._closing.set()
        self._acceptor.join()
        self._listener.close()
        self.cut()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- internals ------------------------------------------------------------

    def _count(self, n: int) -> None:
        with self._lock:
            self.forwarded += n

    def _matches(self, data: bytes) -> bool:
        with self._lock:
            if self._trigger is None or self._trigger[0] not in data:
                return False
            pattern, times = self._trigger
            self._trigger = (pattern, times - 1) if times > 1 else None
            return True

    def _fired(self) -> None:
        with self._lock:
            self.replies_dropped += 1

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            readable, _, _ = select.select([self._listener], [], [], _TICK)
            if not readable:
                continue
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                if self._closing.is_set():
                    return
                time.sleep(_TICK)
                continue
            client.setblocking(True)
            with self._lock:
                self.accepted += 1
            if self.mode == REFUSE:
                client.close()
                continue
            link = _Link(self, client)
            with self._lock:
                if self._closing.is_set():
                    client.close()
                    return
                self._links.add(link)
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(link.thread)
            link.thread.start()
