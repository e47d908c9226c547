"""Review: live progress bars on a terminal and the log lines shown above
them (pexpect: a real pseudo-terminal)."""

from __future__ import annotations

import io
import os
import re
import sys

import orjson
import pexpect
from rich.console import Console

from syncwd_fast import Syncwd, Table

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def drain_in_a_terminal(redis_url: str, dsn: str, prefix: str, *options: str, term: str = "xterm-256color") -> str:
    """Run ``drain`` in an 80-column pseudo-terminal; its screen output."""
    argv = ["-m", "syncwd_fast", *options, "drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix]
    child = pexpect.spawn(
        sys.executable,
        [*argv, "--batch", "50"],
        env={**os.environ, "TERM": term, "COLUMNS": "80", "LINES": "40"},
        dimensions=(40, 80),
        encoding="utf-8",
        timeout=60,
    )
    screen: str = child.read()
    child.close()
    assert child.exitstatus == 1, screen
    return screen


def test_json_log_lines_stay_one_object_a_line_above_live_bars(r, db, schema, redis_url, dsn, prefix):
    # A table missing in PostgreSQL: its error is logged while the bars are up, a line longer than the terminal.
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY, v int)")
    w = Syncwd(r, prefix=prefix)
    w.update_many(Table(f"{schema}.a", partitions=2), [{"id": i, "v": i} for i in range(300)])
    missing = f"{schema}.not_created_in_postgresql_at_all"
    w.update(Table(missing), {"id": 1, "v": 1})
    screen = drain_in_a_terminal(redis_url, dsn, prefix, "--log-format", "json")
    text = ANSI.sub("", screen).replace("\r", "")
    logged = [line for line in text.split("\n") if "level" in line or line.startswith("{")]
    assert logged, screen
    for line in logged:  # each a whole JSON object: not wrapped at the terminal's width
        entry = orjson.loads(line.strip())
        assert entry["level"] == "error" and entry["table"] == missing, line
        assert f"table '{missing}' does not exist in PostgreSQL" in entry["message"]


def test_an_interrupted_table_is_no_full_bar(r, db, schema, dsn, prefix):
    from syncwd_fast import FastDrainer
    from syncwd_fast.progress import DrainProgress

    db.execute(f"CREATE TABLE {schema}.b (id int PRIMARY KEY, v int)")
    b = Table(f"{schema}.b", partitions=2)
    Syncwd(r, prefix=prefix).update_many(b, [{"id": i, "v": i} for i in range(400)])
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    progress = DrainProgress("live", console=console)
    drainer = FastDrainer(r, dsn, prefix=prefix, batch=50, workers=2, observer=progress)
    # Both partitions under way; stopped after the first batch: each stops after its batch in flight.
    drainer.options.on_batch = lambda *_: drainer.request_stop("a test")
    with progress:
        report = drainer.drain()
    assert report.exit_code == 4 and 50 <= report.upserted <= 100
    frames = ANSI.sub("", console.file.getvalue()).replace("\r", "\n")  # type: ignore[attr-defined]
    last = [line for line in frames.split("\n") if line.startswith(b.name)][-1]
    # The rows done of the ids its runs held (200 a partition, at most 50 done of each): not "100 of 100",
    # a full bar saying the table was drained.
    done = re.search(r" ([\d,]+) of ([\d,]+)\+? rows ", last)
    assert done, last
    assert int(done[1]) == report.upserted and int(done[2].replace(",", "")) in (200, 400), last


def test_a_dumb_terminal_gets_a_line_per_table(r, db, schema, redis_url, dsn, prefix):
    # Rich draws no live display on TERM=dumb (only the last frame, at the end): nothing would show while it drains.
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY, v int CHECK (v >= 0))")
    a = Table(f"{schema}.a", partitions=2)
    Syncwd(r, prefix=prefix).update_many(a, [{"id": i, "v": -1 if i < 3 else i} for i in range(300)])
    screen = drain_in_a_terminal(redis_url, dsn, prefix, term="dumb")
    lines = screen.replace("\r", "").split("\n")
    assert re.fullmatch(rf"{re.escape(a.name)}: 300 rows in [\d.]+ s \([\d,]+ rows/s\), 3 dead letters", lines[0]), (
        screen
    )
    assert "━" not in screen and "\x1b[" not in screen, screen


def test_a_long_table_name_leaves_room_for_the_counts(r, db, schema, dsn, prefix):
    from syncwd_fast import FastDrainer
    from syncwd_fast.progress import DrainProgress

    name = f"{schema}.{'l' * 63}"  # 63: PostgreSQL's longest identifier
    db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v int)")
    Syncwd(r, prefix=prefix).update_many(Table(name), [{"id": i, "v": i} for i in range(120)])
    console = Console(file=io.StringIO(), force_terminal=True, width=80)
    progress = DrainProgress("live", console=console)
    with progress:
        assert FastDrainer(r, dsn, prefix=prefix, batch=50, observer=progress).drain().upserted == 120
    frames = ANSI.sub("", console.file.getvalue()).replace("\r", "\n")  # type: ignore[attr-defined]
    last = [line for line in frames.split("\n") if "l" * 20 in line][-1]
    assert last.startswith("...") and last.split()[0].endswith("l" * 20), last  # its end: the table's own name
    assert "120 of 120" in last and " 0 dead" in last, frames[-400:]  # (on 80 columns "rows" may wrap below)
