"""What drain, schedule and dead-letter retry show while they run: a line
per table off a terminal, live bars in a real pseudo-terminal, nothing but
errors with --quiet, stdout untouched with --json."""

from __future__ import annotations

import os
import re
import sys

import pexpect
import pytest
from click.testing import CliRunner

from syncwd_fast import Syncwd, Table
from syncwd_fast.cli import main
from syncwd_fast.progress import progress_mode

from .helpers import cli, count, last_json

LINE = re.compile(r"^(\S+): ([\d,]+) rows in ([\d.]+) s \(([\d,]+) rows/s\), ([\d,]+) dead letters?$")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def tables(r, db, schema, prefix):
    """Two tables with records waiting: a (1000, 10 refused by its CHECK), b (400)."""
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY, v int CHECK (v >= 0))")
    db.execute(f"CREATE TABLE {schema}.b (id int PRIMARY KEY, v int)")
    a, b = Table(f"{schema}.a", partitions=3), Table(f"{schema}.b", partitions=2)
    w = Syncwd(r, prefix=prefix)
    w.update_many(a, [{"id": i, "v": -1 if i % 100 == 5 else i} for i in range(1000)])
    w.update_many(b, [{"id": i, "v": i} for i in range(400)])
    return a, b


def table_lines(stdout: str) -> dict[str, tuple[int, int]]:
    """{table: (rows, dead letters)} of the per-table lines."""
    found = {}
    for line in stdout.splitlines():
        m = LINE.match(line)
        if m:
            found[m[1]] = (int(m[2].replace(",", "")), int(m[5].replace(",", "")))
    return found


def test_progress_mode():
    class Tty:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    assert progress_mode(False, False, Tty(True)) == "live"  # type: ignore[arg-type]
    assert progress_mode(False, False, Tty(False)) == "lines"  # type: ignore[arg-type]
    assert progress_mode(True, False, Tty(True)) == "off"  # type: ignore[arg-type]
    assert progress_mode(False, True, Tty(True)) == "off"  # type: ignore[arg-type]


def test_off_a_terminal_a_line_per_table_then_the_summary(redis_url, dsn, prefix, tables, db):
    a, b = tables
    done = CliRunner().invoke(
        main, ["drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--batch", "100", "--workers", "2"]
    )
    assert done.exit_code == 1, done.output  # dead letters
    assert table_lines(done.stdout) == {a.name: (1000, 10), b.name: (400, 0)}
    lines = done.stdout.splitlines()
    assert lines[2].startswith("1390 upserted, 0 deleted, 10 dead-lettered in ")  # after both tables' lines
    assert f"  {a.name}: 990 upserted, 0 deleted, 10 dead-lettered" in lines
    assert count(db, b.name) == 400


def test_off_a_terminal_in_a_subprocess_and_quiet_and_json(r, redis_url, dsn, prefix, tables):
    a, b = tables
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--table", b.name)
    assert out.returncode == 0, out.stderr
    assert table_lines(out.stdout) == {b.name: (400, 0)}
    assert out.stdout.splitlines()[-2].startswith("400 upserted, 0 deleted, 0 dead-lettered in ")
    assert "rows/s" not in out.stderr  # no bars off a terminal

    # --quiet: errors only; the dead letters still say so by the exit code
    out = cli("--quiet", "drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--table", a.name)
    assert out.returncode == 1, out.stderr
    assert out.stdout == "" and out.stderr == ""

    # --json: stdout is the report alone, as before
    Syncwd(r, prefix=prefix).update_many(b, [{"id": i, "v": -i} for i in range(30)])
    out = cli("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--json")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.splitlines()) == 1 and last_json(out.stdout)["upserted"] == 30


def test_quiet_still_prints_errors(redis_url, prefix):
    out = cli("--quiet", "drain", "--redis", redis_url, "--dsn", "mongodb://nowhere/x", "--prefix", prefix)
    assert out.returncode == 2 and out.stdout == ""
    assert "mongodb" in out.stderr


def test_schedule_and_dead_letter_retry_show_their_tables(r, db, redis_url, dsn, prefix, tables):
    a, b = tables
    runner = CliRunner()
    args = ["--redis", redis_url, "--dsn", dsn, "--prefix", prefix]
    done = runner.invoke(main, ["schedule", *args, "--every", "1s", "--max-runs", "1"])
    assert done.exit_code == 1, done.output
    assert table_lines(done.stdout) == {a.name: (1000, 10), b.name: (400, 0)}
    db.execute(f"ALTER TABLE {a.name} DROP CONSTRAINT a_v_check")
    done = runner.invoke(main, ["dead-letter", "retry", "--redis", redis_url, "--prefix", prefix, "--dsn", dsn])
    assert done.exit_code == 0, done.output
    assert table_lines(done.stdout) == {a.name: (10, 0)}
    assert "10 dead letters marked dirty again" in done.stdout
    assert count(db, a.name) == 1000


def test_live_bars_in_a_real_pseudo_terminal(redis_url, dsn, prefix, tables):
    a, b = tables
    argv = ["-m", "syncwd_fast", "drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--batch", "50"]
    child = pexpect.spawn(
        sys.executable,
        argv,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"},
        dimensions=(40, 160),
        encoding="utf-8",
        timeout=120,
    )
    screen = child.read()
    child.close()
    assert child.exitstatus == 1, screen  # dead letters
    text = ANSI.sub("", screen)
    assert "\x1b[" in screen  # drawn as a terminal's display, not printed as lines
    # The bars' last frame: each table, its rows done of its runs', rows/s, its dead letters.
    assert re.search(rf"{re.escape(a.name)} .*1,000 of 1,000 rows +[\d,]+ rows/s .*10 dead", text), text
    assert re.search(rf"{re.escape(b.name)} .*400 of 400 rows +[\d,]+ rows/s .*0 dead", text), text
    assert not table_lines(text.replace("\r", ""))  # no off-terminal lines
    # ... then the summary, after the bars.
    summary = text.index("1390 upserted, 0 deleted, 10 dead-lettered")
    assert summary > text.rindex("400 of 400 rows")
    assert f"{a.name}: 990 upserted, 0 deleted, 10 dead-lettered" in text[summary:]


def test_a_drain_stopped_early_says_so_per_table(r, dsn, prefix, tables):
    from syncwd_fast import FastDrainer
    from syncwd_fast.progress import DrainProgress

    a, b = tables
    said: list[str] = []
    progress = DrainProgress("lines", echo=said.append)
    drainer = FastDrainer(r, dsn, prefix=prefix, tables=[b.name], batch=50, observer=progress)
    drainer.options.on_batch = lambda *_: drainer.request_stop("a test")  # stop after the first batch
    with progress:
        report = drainer.drain()
    assert report.exit_code == 4 and report.upserted == 50
    assert len(said) == 1 and said[0].startswith(f"{b.name}: 50 rows in ")
    assert said[0].endswith(", 0 dead letters; interrupted; stopped before its end"), said  # partition 1 never started
