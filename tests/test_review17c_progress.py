"""Review: live progress bars on a terminal and the log lines shown above
them (pexpect: a real pseudo-terminal)."""

from __future__ import annotations

import os
import re
import sys

import orjson
import pexpect

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
