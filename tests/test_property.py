"""A stateful property test: random writes, deletes, clean drains and drains
crashed at a random batch, against an in-memory model of the latest state.

A crash is simulated in-process: from the crash on, every Lua call of the
crashed drainer raises `Crash` (a BaseException, so nothing in the engine
catches it), as if the process had died at that instruction. Three crash
points: inside the merge transaction (rolled back), after COMMIT but before
the batch's ack, and right after an ack. The dead drainer's leases are then
removed, as their expiry would.

Invariants: after every step Redis reads back the model; after a crash every
record whose latest state is not yet in PostgreSQL is still dirty, in its run
or in flight; after every clean drain (and at the end) PostgreSQL equals the
model and nothing is dirty, in a run or in flight.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
import pytest
import redis as redis_lib
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from syncwd_fast import FastDrainer, Syncwd, Table, scripts
from syncwd_fast.keys import TOMBSTONE
from syncwd_fast.status import table_status

from .conftest import server_url
from .helpers import in_flight, redo
from .targets import MySQLDB, db, dsn, schema, target  # noqa: F401  (each test against each built-in sink)

IDS = st.integers(0, 20)
TEXT = st.one_of(
    st.none(),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=6),
)
PARTITIONS = 2
BATCH = 3


class Crash(BaseException):
    """The drainer process dies here."""


class Crasher:
    """Makes a drainer die at the k-th event of one kind.

    ``point``: "in_merge" (the k-th lease check before a COMMIT), "after_commit"
    (the k-th batch merged, before its ack) or "after_ack" (the k-th batch ack
    done)."""

    def __init__(self, point: str, k: int) -> None:
        self.point = point
        self.k = k
        self.seen = 0
        self.crashed = False
        self.real_call = scripts.call

    def _tick(self) -> bool:
        self.seen += 1
        return self.seen == self.k

    def die(self) -> None:
        self.crashed = True
        raise Crash(f"{self.point} #{self.k}")

    def call(self, client: Any, name: str, keys: list[str], args: list[Any]) -> Any:
        if self.crashed:
            raise Crash("the drainer is dead")
        # The lease check before COMMIT runs on the merging thread; the
        # heartbeat's renewals (its own thread) are not merge points.
        in_merge = name == "lease" and args[0] == "renew" and threading.current_thread().name != "syncwd-heartbeat"
        if self.point == "in_merge" and in_merge and self._tick():
            self.die()
        result = self.real_call(client, name, keys, args)
        # A batch ack names its pops (how many: args[4]); the run's closing ack has none.
        if self.point == "after_ack" and name == "ack" and int(args[4]) and self._tick():
            self.die()
        return result

    def on_batch(self, table: str, partition: int, n: int) -> None:
        if self.crashed:
            raise Crash("the drainer is dead")
        if self.point == "after_commit" and self._tick():
            self.die()


class DrainMachine(RuleBasedStateMachine):
    """Against PostgreSQL; MariaDBDrainMachine below runs the same against MariaDB."""

    def __init__(self) -> None:
        super().__init__()
        self.schema = "t_" + uuid.uuid4().hex[:12]
        self.prefix = "t" + uuid.uuid4().hex[:12]
        self.r = redis_lib.Redis.from_url(server_url("redis"))
        self.dsn, self.db = self.create_target()
        self.db.execute(f"CREATE TABLE {self.schema}.p (id int PRIMARY KEY, v int NOT NULL, s text)")
        self.table = Table(f"{self.schema}.p", partitions=PARTITIONS)
        self.sw = Syncwd(self.r, prefix=self.prefix)
        self.sw.register(self.table)
        self.model: dict[int, dict[str, Any]] = {}
        self.version = 0
        self.crashes = 0

    # --- the target: a schema of PostgreSQL's (a database of MariaDB's) ---------

    def create_target(self) -> tuple[str, Any]:
        dsn = server_url("pg")
        db = psycopg.connect(dsn, autocommit=True)
        db.execute(f"CREATE SCHEMA {self.schema}")
        return dsn, db

    def drop_target(self) -> None:
        self.db.execute(f"DROP SCHEMA {self.schema} CASCADE")
        self.db.close()

    # --- helpers ---------------------------------------------------------------

    def _row(self, i: int, s: str | None) -> dict[str, Any]:
        self.version += 1
        return {"id": i, "v": self.version, "s": s}

    def _pg(self) -> dict[int, dict[str, Any]]:
        rows = self.db.execute(f"SELECT id, v, s FROM {self.table.name}").fetchall()
        return {i: {"id": i, "v": v, "s": s} for i, v, s in rows}

    def _status(self) -> dict[str, Any]:
        return table_status(self.r, self.prefix)[self.table.name]

    def _drainer(self, **kwargs: Any) -> FastDrainer:
        return FastDrainer(self.r, self.dsn, prefix=self.prefix, batch=BATCH, **kwargs)

    def _pending(self) -> set[int]:
        """Ids still waiting in Redis: dirty, in the active run or in flight."""
        ids: set[bytes] = set()
        for n in range(PARTITIONS):
            keys = self.table.keys(n, self.prefix)
            ids |= self.r.smembers(keys.dirty)
            run = self.r.hget(keys.meta, "run")
            if run:
                ids |= self.r.smembers(keys.run(run.decode()))  # also ids drained in it: a superset
                ids |= {i.encode() for i in in_flight(self.r, keys, run.decode())}
                ids |= {i.encode() for i in redo(self.r, keys, run.decode())}
        return {int(i) for i in ids}

    def _clean_drain(self) -> None:
        report = self._drainer().drain()
        assert report.exit_code == 0, report.to_dict()
        assert not any(t.busy for t in report.tables.values()), report.to_dict()
        assert self._pg() == self.model
        status = self._status()
        assert (status["dirty"], status["in_run"], status["inflight"], status["dead"]) == (0, 0, 0, 0), status
        assert status["active_runs"] == {}, status

    # --- rules -----------------------------------------------------------------

    @rule(i=IDS, s=TEXT)
    def update(self, i: int, s: str | None) -> None:
        row = self._row(i, s)
        self.sw.update(self.table, row)
        self.model[i] = row

    @rule(items=st.lists(st.tuples(IDS, TEXT), min_size=1, max_size=12))
    def update_many(self, items: list[tuple[int, str | None]]) -> None:
        rows = [self._row(i, s) for i, s in items]
        self.sw.update_many(self.table, rows)
        for row in rows:  # a later row of the same id wins, as in Redis
            self.model[row["id"]] = row

    @rule(i=IDS)
    def delete(self, i: int) -> None:
        self.sw.delete(self.table, i)
        self.model.pop(i, None)

    @rule()
    def drain(self) -> None:
        self._clean_drain()

    @rule(point=st.sampled_from(["in_merge", "after_commit", "after_ack"]), k=st.integers(1, 4))
    def drain_killed(self, point: str, k: int) -> None:
        crasher = Crasher(point, k)
        scripts.call = crasher.call  # type: ignore[assignment]
        try:
            report = self._drainer(on_batch=crasher.on_batch).drain()
        except Crash:
            report = None
        finally:
            scripts.call = crasher.real_call  # type: ignore[assignment]
        event(f"drain_killed: {'crashed ' + point if report is None else 'finished first'}")
        if report is None:
            self.crashes += 1
            # The dead drainer's leases would expire; nobody else holds them.
            self.r.delete(*[self.table.keys(n, self.prefix).lease for n in range(PARTITIONS)])
            # Nothing is lost: whatever PostgreSQL lacks still waits in Redis.
            pg, pending = self._pg(), self._pending()
            behind = {i for i in range(21) if pg.get(i) != self.model.get(i)}
            assert behind <= pending, (point, k, behind - pending)
        else:  # it ran out of batches before the k-th event: a clean drain
            assert crasher.seen < k
            assert report.exit_code == 0, report.to_dict()
            assert self._pg() == self.model

    # --- invariants --------------------------------------------------------------

    @invariant()
    def redis_reads_back_the_model(self) -> None:
        ids = [str(i) for i in range(21)]
        values = self.r.mget([self.table.keys(self.table.partition(i), self.prefix).value(i) for i in ids])
        for i, raw in zip(range(21), values):
            if i in self.model:
                assert raw is not None and not raw.startswith(TOMBSTONE), (i, raw)
                assert orjson.loads(raw) == self.model[i]
            else:
                assert raw is None or raw.startswith(TOMBSTONE), (i, raw)

    def teardown(self) -> None:
        try:
            self._clean_drain()
        finally:
            self.drop_target()
            keys = list(self.r.scan_iter(match=f"{self.prefix}:*", count=1000))
            if keys:
                self.r.delete(*keys)
            self.r.close()


class MariaDBDrainMachine(DrainMachine):
    """The same machine with the MariaDB sink: a database of its own."""

    def create_target(self) -> tuple[str, Any]:
        import pymysql

        from syncwd_fast.sinks.mysql.connection import parse_dsn

        url = mysql_server()
        args = parse_dsn(url)
        admin = pymysql.connect(**{**args, "database": None}, autocommit=True, charset="utf8mb4")
        admin.cursor().execute(f"CREATE DATABASE {self.schema} CHARACTER SET utf8mb4")
        admin.close()
        conn = pymysql.connect(**{**args, "database": self.schema}, autocommit=True, charset="utf8mb4")
        return urlunsplit(urlsplit(url)._replace(path="/" + self.schema)), MySQLDB(conn)

    def drop_target(self) -> None:
        self.db.execute(f"DROP DATABASE {self.schema}")
        self.db.conn.close()


SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
DrainMachine.TestCase.settings = SETTINGS
MariaDBDrainMachine.TestCase.settings = SETTINGS
TestDrainMachine = DrainMachine.TestCase


_mysql_url: list[str] = []  # a machine is built by hypothesis, not pytest: the fixture's value, set below


def mysql_server() -> str:
    return _mysql_url[0]


class TestMariaDBDrainMachine(MariaDBDrainMachine.TestCase):  # type: ignore[name-defined,misc]
    @pytest.fixture(autouse=True)
    def _url(self, mysql_url: str) -> None:
        _mysql_url[:] = [mysql_url]


@pytest.mark.parametrize("point", ["in_merge", "after_commit", "after_ack"])
def test_each_crash_point_is_reached(r, db, dsn, prefix, schema, point):
    """Guards the simulation above: if the engine stopped calling Lua through
    `scripts.call` or `on_batch`, the machine's crashes would silently vanish."""
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL, s text)")
    t = Table(f"{schema}.p", partitions=PARTITIONS)
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i, "s": None} for i in range(21)])
    crasher = Crasher(point, 2)
    scripts.call = crasher.call  # type: ignore[assignment]
    try:
        with pytest.raises(Crash):
            FastDrainer(r, dsn, prefix=prefix, batch=BATCH, on_batch=crasher.on_batch).drain()
    finally:
        scripts.call = crasher.real_call  # type: ignore[assignment]
    landed = db.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0]
    if point == "in_merge":  # the second batch's transaction rolled back
        assert landed == BATCH
    elif point == "after_commit":  # the second batch committed, then the drainer died
        assert landed == 2 * BATCH
    else:  # the third batch may have merged while the second was acked
        assert landed in (2 * BATCH, 3 * BATCH)
