"""Review: cron times across a daylight-saving change. A daily 03:00 drain
must run at 03:00 local time on the day the clocks change, as cron does,
not an hour off (the next time was computed at the offset of the time
before the change)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from syncwd_fast.schedule import Schedule


class StillClock:
    """Never reaches a due time: records what the schedule waits for."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.waits: list[float] = []

    def now(self) -> float:
        return self.start

    def wait(self, stop: threading.Event, until: float) -> bool:
        self.waits.append(until)
        return True  # stopped: the test reads the first due time only


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def utc(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(
    ("start", "cron", "due"),
    [
        ("2024-03-30 12:00", "0 3 * * *", "2024-03-31 01:00"),  # 03:00 CEST (+2), the day clocks go forward
        ("2024-10-26 12:00", "0 3 * * *", "2024-10-27 02:00"),  # 03:00 CET (+1), the day clocks go back
        ("2024-03-30 12:00", "30 23 * * *", "2024-03-30 22:30"),  # the same day: no change in between
        ("2024-03-31 00:30", "0 4 * * *", "2024-03-31 02:00"),  # 04:00 CEST, asked at 01:30 CET
    ],
)
def test_a_daily_cron_time_is_local_time_across_a_dst_change(berlin, start, cron, due):
    clock = StillClock(utc(start))
    seen: list[float] = []
    assert list(Schedule(cron=cron, clock=clock).ticks(threading.Event(), seen.append)) == []
    assert datetime.fromtimestamp(seen[0], timezone.utc) == datetime.fromtimestamp(utc(due), timezone.utc)
    assert clock.waits == seen


def test_missed_ticks_across_a_dst_change_are_counted_in_local_time(berlin):
    # An hourly cron at minute 0, overrun from 00:00 CET to 05:30 CEST on the day clocks go forward:
    # 01:00, 03:00, 04:00, 05:00 local passed (02:00 does not exist), the next is 06:00 CEST.
    s = Schedule(cron="0 * * * *", clock=StillClock(0))
    skipped, last, following = s.missed(utc("2024-03-30 23:00"), utc("2024-03-31 03:30"))
    assert (skipped, last, following) == (4, utc("2024-03-31 03:00"), utc("2024-03-31 04:00"))
    assert following - last == timedelta(hours=1).total_seconds()
