"""SIGINT and SIGTERM for a drain or a schedule: the first stops after the
batch in flight, the second at once (both leave everything resumable)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any


class Interrupts:
    """Routes SIGINT/SIGTERM to ``first(name)`` and then ``second(name)``.

    Handlers are installed only on the main thread (elsewhere Python cannot)
    and the previous ones are put back on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, first: Callable[[str], None], second: Callable[[str], None]) -> None:
        self.first = first
        self.second = second
        self.received: list[str] = []
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        (self.first if len(self.received) == 1 else self.second)(name)

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def done(self) -> None:
        """The work is over and its report on the way out: from now on these
        signals are ignored (not put back), so one arriving while the report
        is printed or the process exits cannot kill it without its report."""
        if self._previous:
            for sig in self.SIGNALS:
                signal.signal(sig, signal.SIG_IGN)
            self._previous.clear()

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
