"""What a drain shows while it runs: on a terminal, a live ``rich`` display
with a bar per table (rows done of the snapshot, rows/s, time left, dead
letters so far); off a terminal, a line per table as it finishes; or nothing
(``--quiet``, ``--json``). An observer of the drain (events.py)."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Literal

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text

from .events import BatchDone, DrainObserver
from .report import dead_letter_count

if TYPE_CHECKING:
    from .partition import PartitionResult
    from .report import DrainReport

Mode = Literal["live", "lines", "off"]


def progress_mode(as_json: bool, quiet: bool, stream: IO[str] | None = None) -> Mode:
    """Live bars on a terminal; lines off one, or on one that cannot redraw
    (TERM=dumb: rich shows no live display there, only its last frame at the
    end); nothing with --json or --quiet."""
    if as_json or quiet:
        return "off"
    stream = stream or sys.stderr
    dumb = os.environ.get("TERM", "").lower() in ("dumb", "unknown")
    return "live" if stream.isatty() and not dumb else "lines"


LABEL = 30  # most characters of a table's name in its bar


def _label(name: str) -> str:
    """A table's name in its bar: a long one (up to 127 characters) took the
    whole width of a terminal, and the counts were cut off. Its end is kept:
    the table's name, the schema's is shared by the others. ("..." as
    ASCII: a terminal's encoding may not have an ellipsis.)"""
    return name if len(name) <= LABEL else "..." + name[-(LABEL - 3) :]


def _rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds > 0 else 0.0


@dataclass
class _Table:
    partitions: int
    started: float  # the table's first run, or the drain's start
    finished: int = 0  # partitions done
    total: int = 0  # ids of the runs started so far
    rows: int = 0
    dead: int = 0
    busy: list[int] = field(default_factory=list)
    known: set[int] = field(default_factory=set)  # partitions whose run started, or that finished
    interrupted: bool = False
    seconds: float | None = None  # set when every partition is done
    running: bool = False  # a run started: the clock runs from then
    task: TaskID | None = None


class _Rows(ProgressColumn):
    """Rows done of the runs' ids; "+" while partitions that have not started
    a run yet may add to the total."""

    def render(self, task: Task) -> Text:
        total = "?" if task.total is None else f"{int(task.total):,}" + ("+" if task.fields.get("more") else "")
        return Text(f"{int(task.completed):,} of {total} rows")


class _Speed(ProgressColumn):
    """Rows/s and time left from the table's own clock (a bar's own speed
    needs two updates in its window; a small table has one)."""

    def render(self, task: Task) -> Text:
        seconds = task.fields.get("seconds")
        if seconds is None:
            started = task.fields.get("started")
            seconds = time.monotonic() - started if started is not None else 0.0
        rate = _rate(int(task.completed), seconds)
        if task.fields.get("seconds") is not None:  # done with (drained, or stopped early): how long it took
            eta = f"{seconds:.1f} s"
        elif task.total is not None and task.completed < task.total and rate > 0:
            left = (task.total - task.completed) / rate
            eta = f"{int(left) // 60}:{int(left) % 60:02d} left"
        else:
            eta = "-:-- left"
        return Text(f"{rate:,.0f} rows/s  {eta}")


class _AboveBars:
    """A log handler's stream while the bars are up: each whole line printed
    above them, never wrapped. (Rich's stand-in for stderr wraps a line at
    the terminal's width: a JSON log line became several, none of them JSON.)
    The handler's lock makes its writes one at a time."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self.console.print(Text(line), soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        pass

    def close(self, stream: IO[str]) -> None:
        """The bars are down: what is left of a line goes to ``stream``."""
        if self._partial:
            stream.write(self._partial)
            self._partial = ""


class DrainProgress(DrainObserver):
    """Shows a drain as it goes (see the module's doc). Use as a context
    manager around each ``drain()``: it starts and stops the live display.

    ``echo`` prints a line (mode "lines"): stdout by default."""

    def __init__(
        self,
        mode: Mode,
        echo: Callable[[str], None] | None = None,
        console: Console | None = None,
    ) -> None:
        self.mode = mode
        self.echo = echo or (lambda line: print(line, flush=True))
        self._lock = threading.Lock()
        self._tables: dict[str, _Table] = {}
        self._console = console
        self._bars: Progress | None = None
        self._swapped: list[tuple[logging.StreamHandler[IO[str]], IO[str]]] = []

    # --- the live display ---------------------------------------------------

    def __enter__(self) -> DrainProgress:
        with self._lock:
            self._tables = {}
        if self.mode == "live":
            self._bars = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                _Rows(),
                _Speed(),
                TextColumn("{task.fields[dead]:,} dead"),
                console=self._console or Console(stderr=True),
                refresh_per_second=4,
                redirect_stdout=False,
            )
            stderr = sys.stderr
            self._bars.start()
            self._logs_through(stderr)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Take the live display down (also from a signal handler, before
        the report is printed); nothing to do when none is up."""
        bars, self._bars = self._bars, None
        if bars is not None:
            self._logs_through(None)
            bars.stop()

    def _logs_through(self, stderr: IO[str] | None) -> None:
        """While the bars are shown, the package's log lines that went to
        ``stderr`` are printed above the bars (not across them), each as it
        is (_AboveBars); given None, back as they were."""
        if stderr is None:
            for handler, old in self._swapped:
                above = handler.setStream(old)
                if isinstance(above, _AboveBars):
                    above.close(old)
            self._swapped = []
            return
        assert self._bars is not None
        for each in logging.getLogger("syncwd_fast").handlers:
            if isinstance(each, logging.StreamHandler) and each.stream is stderr:
                each.setStream(_AboveBars(self._bars.console))
                self._swapped.append((each, stderr))

    # --- the drain's events -------------------------------------------------

    def drain_started(self, tables: Mapping[str, int]) -> None:
        now = time.monotonic()
        with self._lock:
            for name, partitions in tables.items():
                table = self._tables[name] = _Table(partitions, now)
                if self._bars is not None:
                    table.task = self._bars.add_task(
                        _label(name), total=None, dead=0, started=None, seconds=None, more=True
                    )

    def run_started(self, table: str, partition: int, run: str, size: int, adopted: bool) -> None:
        with self._lock:
            t = self._tables.get(table)
            if t is None:
                return
            if not t.running:
                t.running, t.started = True, time.monotonic()
            t.known.add(partition)
            t.total += size
            self._show(t)

    def batch_done(self, batch: BatchDone) -> None:
        with self._lock:
            t = self._tables.get(batch.table)
            if t is None:
                return
            t.rows += batch.rows
            t.dead += batch.dead_lettered
            self._show(t)

    def partition_finished(self, table: str, partition: int, result: PartitionResult) -> None:
        with self._lock:
            t = self._tables.get(table)
            if t is None:
                return
            t.finished += 1
            t.known.add(partition)
            if result.busy:
                t.busy.append(partition)
            t.interrupted = t.interrupted or result.interrupted
            if t.finished < t.partitions:
                return
            t.seconds = time.monotonic() - t.started if t.running else 0.0
            self._show(t)
            line = self._line(table, t) if self.mode == "lines" else None
        if line:
            self.echo(line)

    def drain_finished(self, report: DrainReport) -> None:
        with self._lock:
            unfinished = [(name, t) for name, t in self._tables.items() if t.seconds is None]
            lines = []
            for name, t in unfinished:
                t.seconds = time.monotonic() - t.started if t.running else 0.0
                lines.append(self._line(name, t) + "; stopped before its end")
        if self.mode == "lines":
            for line in lines:
                self.echo(line)

    def _show(self, t: _Table) -> None:
        if self._bars is None or t.task is None:
            return
        total = max(t.total, t.rows) if t.running or t.seconds is not None else None
        if t.seconds is not None and not (t.interrupted or t.busy):
            total = t.rows  # drained: a full bar, whatever the snapshot's estimate was
        self._bars.update(
            t.task,
            completed=t.rows,
            total=total,
            dead=t.dead,
            started=t.started if t.running else None,
            seconds=t.seconds,
            more=t.seconds is None and len(t.known) < t.partitions,
        )

    @staticmethod
    def _line(name: str, t: _Table) -> str:
        seconds = t.seconds or 0.0
        line = (
            f"{name}: {t.rows:,} rows in {seconds:.2f} s ({_rate(t.rows, seconds):,.0f} rows/s),"
            f" {dead_letter_count(t.dead)}"
        )
        if t.busy:
            line += f"; partitions {sorted(t.busy)} busy with another drainer"
        if t.interrupted:
            line += "; interrupted"
        return line
