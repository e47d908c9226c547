"""Faults injected while a drain runs: Redis or PostgreSQL restarted, links cut,
slowed down or black-holed.

Every test runs against private servers of this module (a redis-server with
AOF and ``appendfsync always``, a throwaway PostgreSQL cluster). Records are
written straight to Redis; the drain under test (``python -m syncwd_fast
drain``) talks to both servers through a `FaultProxy`, and the fault is
injected once PostgreSQL holds part of the rows and the drain still runs.

The contract checked each time: the faulted drain ends within a stated time,
with exit code 0 (everything landed) or 3 (aborted, everything resumable);
newer values are then written, and a clean drain (direct, in-process) leaves
PostgreSQL equal to the last values written and nothing dirty, in a run or in
flight in Redis.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
import pytest
import redis as redis_lib

from syncwd_fast import FastDrainer, Syncwd, Table, scripts
from syncwd_fast.servers import PostgresServer, RedisServer, ServerUnavailable, postgres_reachable, redis_reachable
from syncwd_fast.status import table_status

from .helpers import wait_for
from .proxy import FaultProxy

N = 40_000  # records per test: a drain with --batch 200 takes a few seconds
BATCH = 200
PARTITIONS = 2
MID_RUN = 1_000  # rows PostgreSQL must hold before the fault is injected
EXIT_OK, EXIT_FAULT = 0, 3

Row = tuple[int, str]  # (v, note) by id


# --- servers and per-test environment -------------------------------------------


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[RedisServer, PostgresServer]]:
    try:
        redis_server = RedisServer(appendonly=True).start()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        pg = PostgresServer().start()
    except ServerUnavailable as exc:
        redis_server.close()
        pytest.skip(str(exc))
    yield redis_server, pg
    pg.close()
    redis_server.close()


@dataclass
class Env:
    redis_server: RedisServer
    pg: PostgresServer
    redis_proxy: FaultProxy
    pg_proxy: FaultProxy
    r: redis_lib.Redis
    prefix: str
    table: Table
    expected: dict[int, Row] = field(default_factory=dict)
    _db: psycopg.Connection[Any] | None = None

    @property
    def sw(self) -> Syncwd:
        return Syncwd(self.r, prefix=self.prefix)

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        """Run a query directly on PostgreSQL, reconnecting after a restart."""
        deadline = time.monotonic() + 60
        while True:
            try:
                if self._db is None or self._db.closed or self._db.broken:
                    if self._db is not None:
                        self._db.close()
                    self._db = psycopg.connect(self.pg.dsn, autocommit=True, connect_timeout=5)
                cur = self._db.execute(query)
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def count(self) -> int:
        return int(self.sql(f"SELECT count(*) FROM {self.table.name}")[0][0])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    # --- what the application writes -------------------------------------------

    def write(self, rows: dict[int, Row | None]) -> None:
        """Write rows (None: delete) and remember them as the expected end state."""
        upserts = [{"id": i, "v": row[0], "note": row[1]} for i, row in rows.items() if row is not None]
        self.sw.update_many(self.table, upserts)
        for i, row in rows.items():
            if row is None:
                self.sw.delete(self.table, i)
        for i, row in rows.items():
            if row is None:
                self.expected.pop(i, None)
            else:
                self.expected[i] = row

    def write_initial(self) -> None:
        """N records, a newer version of every 5th, a delete of every 97th."""
        self.write({i: (i, "first") for i in range(N)})
        self.write({i: (-i, "second") for i in range(0, N, 5)})
        self.write({i: None for i in range(0, N, 97)})

    def write_after_fault(self) -> None:
        """Newer values after the fault: they must win over anything in flight."""
        self.write({i: (10 * i, "third") for i in range(0, N, 7)})
        self.write({i: (1, "back") for i in range(0, N, 97 * 7)})  # deleted ones come back

    # --- the drain under test ----------------------------------------------------

    def proxied_redis_url(self, query: str = "") -> str:
        return f"redis://127.0.0.1:{self.redis_proxy.port}/0{query}"

    def proxied_dsn(self, extra: str = "") -> str:
        return f"host=127.0.0.1 port={self.pg_proxy.port} user=postgres dbname=postgres {extra}".strip()

    def start_drain(
        self, *, retries: int, lease: float = 2.0, batch: int = BATCH, redis_url: str = "", dsn: str = ""
    ) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "syncwd_fast", "drain", "--redis", redis_url or self.proxied_redis_url()]
        cmd += ["--dsn", dsn or self.proxied_dsn(), "--prefix", self.prefix, "--batch", str(batch)]
        cmd += ["--retries", str(retries), "--lease-seconds", str(lease), "--json"]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # --- the checks ----------------------------------------------------------------

    def pending(self) -> dict[str, Any]:
        return table_status(self.r, self.prefix)[self.table.name]

    def table_rows(self) -> dict[int, Row]:
        return {i: (v, note) for i, v, note in self.sql(f"SELECT id, v, note FROM {self.table.name}")}

    def assert_postgres_matches(self) -> None:
        got = self.table_rows()
        missing = sorted(set(self.expected) - set(got))
        extra = sorted(set(got) - set(self.expected))
        wrong = sorted(i for i in set(got) & set(self.expected) if got[i] != self.expected[i])
        assert not (missing or extra or wrong), (
            f"{len(missing)} missing (e.g. {missing[:5]}), {len(extra)} not deleted (e.g. {extra[:5]}), "
            f"{len(wrong)} stale (e.g. {[(i, got[i], self.expected[i]) for i in wrong[:5]]})"
        )

    def assert_nothing_pending(self) -> None:
        s = self.pending()
        assert (s["dirty"], s["in_run"], s["inflight"], s["dead"], s["active_runs"]) == (0, 0, 0, 0, {}), s

    def clean_drain(self) -> None:
        """A drain with no fault, straight to the servers: it must land everything."""
        leases = [self.table.keys(n, self.prefix).lease for n in range(PARTITIONS)]
        assert wait_for(lambda: not self.r.exists(*leases), timeout=15), "the faulted drain's leases never expired"
        report = FastDrainer(self.r, self.pg.dsn, prefix=self.prefix, batch=5000).drain()
        assert report.exit_code == EXIT_OK, report.summary()
        assert not report.tables[self.table.name].busy
        self.assert_postgres_matches()
        self.assert_nothing_pending()


def _ensure_up(redis_server: RedisServer, pg: PostgresServer) -> None:
    """A test that failed half-way may have left a server stopped."""
    if not redis_reachable(redis_server.url):
        redis_server.stop(kill=True)
        redis_server.start()
    if not postgres_reachable(pg.dsn):
        pg.restart("immediate")


@pytest.fixture
def env(servers: tuple[RedisServer, PostgresServer]) -> Iterator[Env]:
    redis_server, pg = servers
    _ensure_up(redis_server, pg)
    prefix = "f" + uuid.uuid4().hex[:12]
    schema = "f_" + uuid.uuid4().hex[:12]
    table = Table(f"{schema}.p", partitions=PARTITIONS)
    with contextlib.ExitStack() as stack:
        redis_proxy = stack.enter_context(FaultProxy("127.0.0.1", redis_server.port))
        pg_proxy = stack.enter_context(FaultProxy("127.0.0.1", pg.port))
        r = redis_lib.Redis.from_url(redis_server.url)
        stack.callback(r.close)
        e = Env(redis_server, pg, redis_proxy, pg_proxy, r, prefix, table)
        stack.callback(e.close)
        e.sql(f"CREATE SCHEMA {schema}")
        e.sql(f"CREATE TABLE {table.name} (id int PRIMARY KEY, v int NOT NULL, note text NOT NULL)")
        yield e
        _ensure_up(redis_server, pg)
        keys = list(r.scan_iter(match=f"{prefix}:*", count=5000))
        for start in range(0, len(keys), 5000):
            r.delete(*keys[start : start + 5000])
        e.sql(f"DROP SCHEMA {schema} CASCADE")
    leaked = [t.name for t in threading.enumerate() if t.name.startswith("fault-proxy")]
    assert not leaked, f"proxy threads left running: {leaked}"


# --- running a drain and injecting a fault mid-run ---------------------------------


@dataclass
class Outcome:
    returncode: int | None  # None: still running at the bound, then killed
    seconds: float  # from the fault to the end of the drain
    report: dict[str, Any] | None
    stderr: str
    reconnected: bool  # the drain opened new connections through a proxy after the fault


def drain_with_fault(
    env: Env, inject: Callable[[], None], *, bound: float, retries: int = 5, **drain_options: Any
) -> Outcome:
    """Start a drain through the proxies, inject the fault once it has merged
    MID_RUN rows (asserting it had not finished), and wait at most ``bound``
    seconds for it to end."""
    proc = env.start_drain(retries=retries, **drain_options)
    try:
        assert wait_for(lambda: proc.poll() is not None or env.count() >= MID_RUN, timeout=60), "it never merged"
        landed = env.count()
        assert proc.poll() is None and landed < N, f"the drain ended before the fault ({landed} rows landed)"
        assert env.redis_proxy.active and env.pg_proxy.active, "the drain does not go through the proxies"
        accepted = env.redis_proxy.accepted + env.pg_proxy.accepted
        started = time.monotonic()
        inject()
        try:
            out, err = proc.communicate(timeout=max(bound - (time.monotonic() - started), 1))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return Outcome(None, time.monotonic() - started, None, err, True)
        seconds = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    report = orjson.loads(out.strip().splitlines()[-1]) if out.strip() else None
    reconnected = env.redis_proxy.accepted + env.pg_proxy.accepted > accepted
    return Outcome(proc.returncode, seconds, report, err, reconnected)


class DrainHung(AssertionError):
    """The faulted drain was still running at its bound."""


class ExitZeroButNotLanded(AssertionError):
    """The faulted drain exited 0 ("everything landed") with records not yet in PostgreSQL."""


def check_outcome(env: Env, outcome: Outcome, bound: float) -> None:
    """The faulted drain ended in time with 0 or 3, and a clean drain then lands
    everything. An engine bug in the faulted drain (a hang, a false exit 0) is
    raised last, after checking that nothing was lost even then."""
    print(
        f"faulted drain: exit {outcome.returncode}, {outcome.seconds:.1f}s after the fault, "
        f"reconnected={outcome.reconnected}, aborted={outcome.report and outcome.report['aborted']}"
    )
    problem: AssertionError | None = None
    if outcome.returncode is None:
        problem = DrainHung(f"the drain still ran {bound:.0f}s after the fault, killed: {outcome.stderr[-2000:]}")
    else:
        assert outcome.returncode in (EXIT_OK, EXIT_FAULT), (outcome.returncode, outcome.stderr[-2000:])
        assert outcome.report is not None and outcome.report["exit_code"] == outcome.returncode
        if outcome.returncode == EXIT_FAULT:
            assert outcome.report["aborted"]
        else:
            # Exit 0 promises that everything landed: nothing may be left in a run or in flight.
            try:
                env.assert_postgres_matches()
                env.assert_nothing_pending()
            except AssertionError as exc:
                problem = ExitZeroButNotLanded(f"exit 0, yet: {exc}")
    env.write_after_fault()
    env.clean_drain()
    if problem is not None:
        raise problem


# --- a. Redis restarted mid-drain ---------------------------------------------------


@pytest.mark.parametrize("kill", [True, False], ids=["kill-9", "sigterm"])
def test_redis_restarted_mid_drain(env: Env, kill: bool) -> None:
    env.write_initial()
    bound = 60
    outcome = drain_with_fault(env, lambda: env.redis_server.restart(kill=kill), bound=bound)
    assert outcome.returncode == EXIT_FAULT or outcome.reconnected, "the restart went unnoticed"
    check_outcome(env, outcome, bound)


# --- b. PostgreSQL restarted mid-drain ----------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarted_mid_drain(env: Env, mode: str) -> None:
    env.write_initial()
    bound = 60
    outcome = drain_with_fault(env, lambda: env.pg.restart(mode), bound=bound)
    assert outcome.returncode == EXIT_FAULT or outcome.reconnected, "the restart went unnoticed"
    check_outcome(env, outcome, bound)


# --- c. connections cut mid-drain ----------------------------------------------------


def cut_repeatedly(proxy: FaultProxy, times: int, interval: float) -> Callable[[], None]:
    def inject() -> None:
        for _ in range(times):
            proxy.cut()
            time.sleep(interval)

    return inject


@pytest.mark.parametrize("link", ["redis", "postgres"])
def test_connections_cut_mid_drain(env: Env, link: str) -> None:
    env.write_initial()
    proxy = env.redis_proxy if link == "redis" else env.pg_proxy
    bound = 60
    outcome = drain_with_fault(env, cut_repeatedly(proxy, times=3, interval=0.3), bound=bound)
    assert outcome.reconnected, "the cuts went unnoticed"
    check_outcome(env, outcome, bound)


def drop_next_reply(proxy: FaultProxy, pattern: bytes) -> Callable[[], None]:
    def inject() -> None:
        proxy.cut_after_reply(pattern)
        assert wait_for(lambda: proxy.replies_dropped > 0, timeout=20), "no request matched"

    return inject


@pytest.mark.parametrize(
    "request_",
    [
        "pop",  # redis-py re-sends it: the first pop's ids are orphaned in flight
        "ack",
        "snapshot",
        "lease",
        "COMMIT",
    ],
)
def test_reply_lost_after_the_server_acted(env: Env, request_: str) -> None:
    """The server did the work (a Lua script on Redis, COMMIT on PostgreSQL), but
    the connection is cut before the reply reaches the drain."""
    env.write_initial()
    if request_ == "COMMIT":
        proxy, pattern = env.pg_proxy, b"COMMIT"
    else:
        proxy, pattern = env.redis_proxy, scripts.script(request_).sha.encode()
    bound = 60
    outcome = drain_with_fault(env, drop_next_reply(proxy, pattern), bound=bound)
    assert outcome.reconnected
    check_outcome(env, outcome, bound)


# --- d. a slow link ---------------------------------------------------------------------


def test_delay_on_both_links(env: Env) -> None:
    env.write_initial()
    bound = 60

    def inject() -> None:
        env.redis_proxy.delay(0.03)
        env.pg_proxy.delay(0.03)

    # Each batch costs several round trips: bigger batches keep the slowed drain short.
    outcome = drain_with_fault(env, inject, bound=bound, batch=2000)
    assert outcome.returncode == EXIT_OK, outcome.stderr[-2000:]
    check_outcome(env, outcome, bound)


# --- e. a black-holed link ---------------------------------------------------------------

# redis-py ends a read after socket_timeout (30 s by default, set by redis_from_url);
# the URL shortens it to 1 s to keep the test short. redis-py retries connection
# errors only, so each Redis call on the stalled link costs one timeout and the
# drain's own retries bound the rest: measured ~4 s. (When redis-py also retried
# timeouts, nested in connect() and its health-check PING, it took 10-31 s.)
REDIS_TIMEOUT_QUERY = "?socket_timeout=1&socket_connect_timeout=1"


@pytest.mark.parametrize("heals", [False, True], ids=["permanent", "heals-after-5s"])
def test_redis_link_blackholed_mid_drain(env: Env, heals: bool) -> None:
    env.write_initial()
    bound = 30  # measured ~4 s; room for a loaded machine

    def inject() -> None:
        env.redis_proxy.blackhole()
        if heals:
            time.sleep(5)
            env.redis_proxy.passthrough()

    outcome = drain_with_fault(
        env, inject, bound=bound, retries=1, lease=1, redis_url=env.proxied_redis_url(REDIS_TIMEOUT_QUERY)
    )
    if not heals:
        assert outcome.returncode == EXIT_FAULT, (outcome.returncode, outcome.stderr[-2000:])
    check_outcome(env, outcome, bound)


# TCP-level settings a user would tighten against a dead link; they cannot see a
# stalled peer that still acknowledges every segment (a stalled pgbouncer or proxy).
PG_TIGHT_DSN = "connect_timeout=3 tcp_user_timeout=3000 keepalives_idle=1 keepalives_interval=1 keepalives_count=2"


@pytest.mark.parametrize("heals", [False, True], ids=["permanent", "heals-after-5s"])
def test_postgres_link_blackholed_mid_drain(env: Env, heals: bool) -> None:
    env.write_initial()
    # --lease-seconds 1: statement and idle-in-transaction timeouts of 5 s end the
    # stalled session on the server; the client's own deadline on a merge
    # (connection.deadline, 2 * 5 + 10 = 20 s) then a 3 s connect timeout end it
    # in the client: measured ~24 s. Without that deadline it hung for good.
    bound = 40

    def inject() -> None:
        env.pg_proxy.blackhole()
        if heals:
            time.sleep(5)
            env.pg_proxy.passthrough()

    outcome = drain_with_fault(env, inject, bound=bound, retries=1, lease=1, dsn=env.proxied_dsn(PG_TIGHT_DSN))
    if not heals:
        # Unblock the stalled session's backend before the clean drain (it ended server-side anyway).
        env.pg_proxy.cut()
    check_outcome(env, outcome, bound)
