"""When `syncwd-fast schedule` drains: a fixed interval or a cron expression."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "": 1.0}


def parse_interval(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"invalid interval {text!r}: use e.g. 500ms, 10s, 5m, 1h")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class Schedule:
    interval: float | None = None
    cron: str | None = None

    @classmethod
    def parse(cls, every: str | None, cron: str | None) -> Schedule:
        if bool(every) == bool(cron):
            raise ValueError("give exactly one of --every or --cron")
        if cron:
            from croniter import croniter

            if not croniter.is_valid(cron):
                raise ValueError(f"invalid cron expression {cron!r}")
            return cls(cron=cron)
        return cls(interval=parse_interval(every or ""))

    def ticks(self, stop: threading.Event, waiting: Callable[[float], None] | None = None) -> Iterator[None]:
        """Yields when a drain is due; returns once ``stop`` is set (the
        command sets it on SIGINT or SIGTERM). ``waiting(due)`` is told the
        time (unix seconds) of the next drain before each wait for it."""
        if self.cron:
            from croniter import croniter

            times = croniter(self.cron, datetime.now().astimezone())
            while not stop.is_set():
                due = times.get_next(float)
                if waiting:
                    waiting(due)
                if stop.wait(max(0.0, due - time.time())):
                    return
                yield
        else:
            while not stop.is_set():
                yield
                if waiting:
                    waiting(time.time() + (self.interval or 0.0))
                if stop.wait(self.interval):
                    return


# Severity of a drain's exit code, for a schedule that ends with the worst of
# its runs: configuration, fault, dead letters or tables not drained,
# interrupted, all landed.
SEVERITY = {2: 4, 3: 3, 1: 2, 4: 1, 0: 0}


def worst(codes: list[int]) -> int:
    return max(codes, key=lambda code: SEVERITY.get(code, 5), default=0)
