"""When `syncwd-fast schedule` drains: a fixed interval or a cron expression,
on a clock that tests can replace (``default_clock``)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

log = logging.getLogger("syncwd_fast")

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "": 1.0}
# A wait on the system clock wakes at least this often to read the time
# again: a wall clock set forward or a machine back from suspend is seen.
_WAKE_SECONDS = 60.0
# Missed cron ticks counted one by one up to here (a per-second schedule
# overrun by days is said as "more than").
_MAX_COUNTED = 100_000


def parse_interval(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"invalid interval {text!r}: use e.g. 500ms, 10s, 5m, 1h")
    return float(match.group(1)) * _UNITS[match.group(2)]


class Clock(Protocol):
    """What a schedule reads the time from and waits on."""

    def now(self) -> float:
        """Unix seconds."""

    def wait(self, stop: threading.Event, until: float) -> bool:
        """Wait until ``now() >= until`` or ``stop`` is set; True if stopped."""


class SystemClock:
    """The wall clock (cron times are wall-clock times)."""

    def now(self) -> float:
        return time.time()

    def wait(self, stop: threading.Event, until: float) -> bool:
        while not stop.is_set():
            left = until - time.time()
            if left <= 0:
                return False
            if stop.wait(min(left, _WAKE_SECONDS)):
                return True
        return True


def default_clock() -> Clock:
    """The clock of a Schedule made without one (tests put theirs here)."""
    return SystemClock()


@dataclass
class Schedule:
    interval: float | None = None
    cron: str | None = None
    clock: Clock = field(default_factory=lambda: default_clock())

    @classmethod
    def parse(cls, every: str | None, cron: str | None) -> Schedule:
        """Exactly one of ``every`` (e.g. "10s") or ``cron`` (5 fields, or 6
        with seconds last, as croniter reads them)."""
        if bool(every) == bool(cron):
            raise ValueError("give exactly one of --every or --cron")
        if cron:
            from croniter import croniter

            if not croniter.is_valid(cron):
                raise ValueError(f"invalid cron expression {cron!r}")
            return cls(cron=cron)
        return cls(interval=parse_interval(every or ""))

    def next_cron(self, after: float) -> float:
        """The first cron time after ``after`` (unix seconds), in the local
        time zone with its daylight-saving rules (a fixed offset, the one at
        ``after``, would put the first time after a change an hour off)."""
        from croniter import croniter
        from dateutil import tz  # croniter's own dependency

        return float(croniter(self.cron, datetime.fromtimestamp(after, tz.tzlocal())).get_next(float))

    def missed(self, due: float, now: float) -> tuple[int, float, float]:
        """The cron times after ``due`` that ``now`` has passed: how many, the
        last of them, and the first one after ``now``."""
        skipped, last, following = 0, due, self.next_cron(due)
        while following <= now and skipped < _MAX_COUNTED:
            skipped, last = skipped + 1, following
            following = self.next_cron(following)
        return skipped, last, following if following > now else self.next_cron(now)

    def ticks(self, stop: threading.Event, waiting: Callable[[float], None] | None = None) -> Iterator[None]:
        """Yields when a drain is due; returns once ``stop`` is set (the
        command sets it on SIGINT or SIGTERM). ``waiting(due)`` is told the
        time (unix seconds) of the next drain before each wait for it.

        Cron: the drain runs at each cron time; cron times that pass while a
        drain runs are skipped (said in a warning), never run back to back:
        the next drain is the first cron time after the last one ended.
        Interval: the first drain at once, then each ``interval`` after the
        end of the last."""
        clock = self.clock
        if self.cron:
            due = self.next_cron(clock.now())
            while not stop.is_set():
                if waiting:
                    waiting(due)
                if clock.wait(stop, due):
                    return
                yield
                skipped, last, following = self.missed(due, clock.now())
                if skipped:
                    log.warning(
                        "the drain due at %s ran past %s%d later cron time(s), the last at %s: skipped them"
                        " (the next drain is the first cron time after it ended)",
                        stamp(due),
                        "" if skipped < _MAX_COUNTED else "more than ",
                        skipped,
                        stamp(last),
                    )
                due = following
        else:
            while not stop.is_set():
                yield
                due = clock.now() + (self.interval or 0.0)
                if waiting:
                    waiting(due)
                if clock.wait(stop, due):
                    return


def stamp(at: float) -> str:
    """Unix seconds as local time, as the schedule's messages show it."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


# Severity of a drain's exit code, for a schedule that ends with the worst of
# its runs: configuration, fault, dead letters or tables not drained,
# interrupted, all landed.
SEVERITY = {2: 4, 3: 3, 1: 2, 4: 1, 0: 0}


def worst(codes: list[int]) -> int:
    return max(codes, key=lambda code: SEVERITY.get(code, 5), default=0)
