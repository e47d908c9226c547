"""syncwd-fast schedule end to end on a clock the test advances: the real
command (CliRunner, in a thread) against real Redis and PostgreSQL, its
Schedule given a test clock through ``schedule.default_clock``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from syncwd_fast import Syncwd, Table, schedule
from syncwd_fast.cli import main
from syncwd_fast.drain import FastDrainer
from syncwd_fast.schedule import Schedule, stamp

from .helpers import count


class HandClock:
    """A clock that moves only when the test says; it records each wait."""

    def __init__(self, start: float) -> None:
        self.t = start
        self.cond = threading.Condition()
        self.waiting_until: float | None = None
        self.events: list[tuple[str, Any]] = []  # ("wait", until), shared with the log handler below

    def now(self) -> float:
        with self.cond:
            return self.t

    def wait(self, stop: threading.Event, until: float) -> bool:
        with self.cond:
            self.events.append(("wait", until))
            self.waiting_until = until
            self.cond.notify_all()
            while self.t < until and not stop.is_set():
                self.cond.wait(0.01)
            self.waiting_until = None
            return stop.is_set()

    def advance(self, seconds: float) -> None:
        with self.cond:
            self.t += seconds
            self.cond.notify_all()

    def next_wait(self, timeout: float = 60.0) -> float:
        """The time the schedule waits for, once it waits."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.waiting_until is None:
                assert time.monotonic() < deadline, "the schedule never waited"
                self.cond.wait(0.05)
            return self.waiting_until

    def release(self, timeout: float = 60.0) -> float:
        """Move to the time the schedule waits for: its drain is due."""
        until = self.next_wait(timeout)
        with self.cond:
            self.t = until
            self.waiting_until = None  # the next next_wait() is the schedule's next wait
            self.cond.notify_all()
        return until


def local(*fields: int) -> float:
    return datetime(*fields).timestamp()  # type: ignore[arg-type]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> HandClock:
    c = HandClock(local(2030, 1, 1, 10, 0, 30))
    monkeypatch.setattr(schedule, "default_clock", lambda: c)
    return c


@pytest.fixture
def drains(monkeypatch: pytest.MonkeyPatch, clock: HandClock) -> Iterator[dict[str, Any]]:
    """Each real drain's start on the test clock; a drain takes as long (on
    that clock) as the test puts in ``lasting`` for it."""
    seen: dict[str, Any] = {"started": [], "lasting": {}}
    real = FastDrainer.drain

    def timed(self: FastDrainer) -> Any:
        seen["started"].append(clock.now())
        clock.events.append(("drain", clock.now()))
        report = real(self)
        clock.advance(seen["lasting"].get(len(seen["started"]), 0.0))
        return report

    monkeypatch.setattr(FastDrainer, "drain", timed)
    yield seen


@pytest.fixture
def messages(clock: HandClock) -> Iterator[list[str]]:
    """The package's log messages, in the clock's event list too (in order)."""
    out: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            out.append(record.getMessage())
            clock.events.append(("log", record.getMessage()))

    handler = Keep(logging.INFO)
    logger = logging.getLogger("syncwd_fast")
    logger.addHandler(handler)
    yield out
    logger.removeHandler(handler)


@pytest.fixture
def t(db: Any, schema: str) -> Table:
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int)")
    return Table(f"{schema}.p")


class Running:
    """The schedule command in a thread, as CliRunner runs it."""

    def __init__(self, *args: str) -> None:
        self.result: Result | None = None
        self.thread = threading.Thread(target=self._run, args=(args,), daemon=True)
        self.thread.start()

    def _run(self, args: tuple[str, ...]) -> None:
        self.result = CliRunner().invoke(main, ["schedule", *args], catch_exceptions=False)

    def finish(self, timeout: float = 120.0) -> Result:
        self.thread.join(timeout)
        assert not self.thread.is_alive() and self.result is not None, "the schedule did not end"
        return self.result


def reports(result: Result) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def write(r: Any, prefix: str, t: Table, ids: range) -> None:
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i} for i in ids])


def test_cron_drains_at_its_times_and_an_overrun_skips_the_times_it_missed(
    r, db, redis_url, dsn, prefix, t, clock, drains, messages
):
    drains["lasting"] = {2: 12 * 60.0}  # the second drain, due at 10:10, ends at 10:22
    command = ("--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--cron", "*/5 * * * *", "--max-runs", "3")
    run = Running(*command, "--json")
    write(r, prefix, t, range(0, 10))
    assert clock.release() == local(2030, 1, 1, 10, 5)  # nothing ran before the first cron time
    assert clock.next_wait() == local(2030, 1, 1, 10, 10)  # drain 1 done, at once on the clock
    assert count(db, t.name) == 10
    write(r, prefix, t, range(10, 30))
    clock.release()
    # Drain 2 ran 12 minutes: 10:15 and 10:20 passed meanwhile, and are not run
    # back to back: the next drain is the first cron time after it ended.
    assert clock.next_wait() == local(2030, 1, 1, 10, 25)
    assert count(db, t.name) == 30
    write(r, prefix, t, range(30, 35))
    assert clock.release() == local(2030, 1, 1, 10, 25)
    result = run.finish()

    assert result.exit_code == 0, result.output
    assert drains["started"] == [local(2030, 1, 1, 10, m) for m in (5, 10, 25)]
    assert [rep["upserted"] for rep in reports(result)] == [10, 20, 5]
    assert count(db, t.name) == 35
    # Before each wait it said when the next drain is due, and in how long.
    said = [m for m in messages if m.startswith("next drain at ")]
    assert said == [
        f"next drain at {stamp(local(2030, 1, 1, 10, 5))} (in 4 min)",
        f"next drain at {stamp(local(2030, 1, 1, 10, 10))} (in 5 min)",
        f"next drain at {stamp(local(2030, 1, 1, 10, 25))} (in 3 min)",
    ]
    waits = [n for n, (kind, _) in enumerate(clock.events) if kind == "wait"]
    assert len(waits) == 3 and all(  # each said just before its wait
        str(clock.events[n - 1][1]).startswith(f"next drain at {stamp(clock.events[n][1])} ") for n in waits
    ), clock.events
    skipped = [m for m in messages if "skipped them" in m]
    assert len(skipped) == 1 and "ran past 2 later cron time(s)" in skipped[0], messages
    assert f"the last at {stamp(local(2030, 1, 1, 10, 20))}" in skipped[0]


def test_every_counts_from_the_end_of_the_last_drain(r, db, redis_url, dsn, prefix, t, clock, drains, messages):
    drains["lasting"] = {1: 90.0}  # the first drain takes a minute and a half
    start = clock.now()
    write(r, prefix, t, range(0, 7))
    run = Running("--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--every", "10m", "--max-runs", "2", "--json")
    assert clock.release() == start + 90 + 600  # the first at once; the next 10 min after it ended
    result = run.finish()
    assert result.exit_code == 0, result.output
    assert drains["started"] == [start, start + 690]
    assert [rep["upserted"] for rep in reports(result)] == [7, 0]
    said = [m for m in messages if m.startswith("next drain at ")]
    assert said == [f"next drain at {stamp(start + 690)} (in 10 min)"]


def test_the_missed_cron_times_of_a_long_overrun_are_counted_and_the_next_is_in_the_future():
    plan = Schedule.parse(None, "* * * * * */10")  # every 10 seconds (a 6th field: seconds)
    due = local(2030, 1, 1, 10, 0, 0)
    skipped, last, following = plan.missed(due, due + 95)
    assert (skipped, last, following) == (9, due + 90, due + 100)
    assert plan.missed(due, due + 5) == (0, due, due + 10)
    assert plan.missed(due, due + 10) == (1, due + 10, due + 20)  # a time reached exactly is passed
