"""When `syncwd-fast schedule` drains: a fixed interval or a cron expression."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
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

    def ticks(self) -> Iterator[None]:
        """Yields when a drain is due; returns once SIGINT or SIGTERM arrives."""
        stop = threading.Event()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        try:
            if self.cron:
                from croniter import croniter

                times = croniter(self.cron, datetime.now().astimezone())
                while not stop.is_set():
                    due = times.get_next(float)
                    if stop.wait(max(0.0, due - time.time())):
                        return
                    yield
            else:
                while not stop.is_set():
                    yield
                    if stop.wait(self.interval):
                        return
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
