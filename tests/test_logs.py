"""--log-format text|json, --log-level, --quiet: every message through
logging, with the time, passwords masked in both formats."""

from __future__ import annotations

import io
import logging
from typing import Any

import orjson

from syncwd_fast import Syncwd, Table, logs
from syncwd_fast.masking import Masker

from .helpers import cli, last_json


def test_json_lines_carry_time_level_message_and_fields_and_mask_passwords() -> None:
    masker, out = Masker(), io.StringIO()
    masker.add("postgresql://app:s3cret@db/app")
    log = logs.configure("info", "json", masker, out)
    try:
        log.warning("cannot reach %s", "postgresql://app:s3cret@db/app", extra={"table": "t", "partition": 3})
        log.debug("not shown at info")
        lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    finally:
        logs.configure("info", "text", Masker())
    assert len(lines) == 1
    (line,) = lines
    assert line["level"] == "warning" and line["logger"] == "syncwd_fast" and line["time"].endswith("Z")
    assert (line["table"], line["partition"]) == ("t", 3)
    assert "s3cret" not in line["message"] and "cannot reach" in line["message"]


def test_text_lines_carry_the_time_and_the_level() -> None:
    out = io.StringIO()
    log = logs.configure("warning", "text", Masker(), out)
    try:
        log.info("not shown at warning")
        log.error("a %s", "problem")
    finally:
        logs.configure("info", "text", Masker())
    (line,) = out.getvalue().splitlines()
    assert " syncwd-fast ERROR: a problem" in line and line[:4].isdigit() and "T" in line[:11]
    assert sum(isinstance(h, logging.StreamHandler) for h in log.handlers if getattr(h, "_syncwd_cli", False)) == 1


def _missing_table(r: Any, prefix: str, schema: str) -> None:
    """A table registered, with records, that PostgreSQL lacks: the drain logs an error, exits 1."""
    Syncwd(r, prefix=prefix).update(Table(f"{schema}.missing"), {"id": 1})


def test_the_drain_logs_as_asked(r: Any, redis_url: str, dsn: str, prefix: str, schema: str) -> None:
    _missing_table(r, prefix, schema)
    drain = ("drain", "--redis", redis_url, "--dsn", dsn, "--prefix", prefix, "--retries", "0")
    out = cli("--log-format", "json", *drain, "--json")
    assert out.returncode == 1 and last_json(out.stdout)["exit_code"] == 1
    lines = [orjson.loads(line) for line in out.stderr.splitlines() if line.strip()]
    (error,) = [line for line in lines if line["level"] == "error"]
    assert "missing" in error["message"] and error["table"] == f"{schema}.missing"

    out = cli("--quiet", *drain)
    assert out.returncode == 1 and out.stdout == ""  # no summary
    assert all("WARNING" not in line for line in out.stderr.splitlines())

    out = cli(*drain, env={"SYNCWD_LOG_LEVEL": "error", "SYNCWD_LOG_FORMAT": "json"})
    assert out.returncode == 1 and out.stdout.strip()  # the summary, as without the options
    assert all(orjson.loads(line)["level"] == "error" for line in out.stderr.splitlines() if line.strip())


def test_a_partition_drain_logs_its_table_partition_and_run(r: Any, prefix: str) -> None:
    """JSON lines of a partition's drain name its table and partition, and
    once its run is snapshot, the run: here a lease taken over from a holder
    that is no more (before the run) and a sink failing on a record (in it)."""
    from syncwd_fast import FastDrainer, holder, scripts

    from .sinks_for_tests import DictSink

    table = Table("game.logged", key="user_id", partitions=1)
    Syncwd(r, prefix=prefix).update_many(table, [{"user_id": 1, "v": 2}, {"user_id": 2, "v": 666}])
    keys = table.keys(0, prefix)
    gone = {**holder.identity(), "pid": 2**22 + 12345}  # above any pid_max: no such process
    assert scripts.lease(r, keys, "acquire", "dead", 60_000, holder.text(gone), holder.encoded(gone, "dead"))
    out = io.StringIO()
    logs.configure("debug", "json", Masker(), out)
    try:
        sink = DictSink(explode=lambda rec: ValueError("no") if rec.value["v"] == 666 else None)
        report = FastDrainer(r, "", prefix=prefix, sinks={table.name: sink}).drain()
    finally:
        logs.configure("info", "text", Masker())
    assert (report.upserted, report.dead_lettered) == (1, 1)
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]
    run = r.hget(keys.meta, "last_run").decode()
    taken = [line for line in lines if "taking the partition over" in line["message"]]
    failed = [line for line in lines if "the sink failed on a batch" in line["message"]]
    assert taken and failed, lines
    assert all((line["table"], line["partition"]) == (table.name, 0) for line in taken + failed)
    assert "run" not in taken[0] and failed[0]["run"] == run
    # The run's end carries the rows and the seconds with the partition's own fields.
    (finished,) = [line for line in lines if "finished:" in line["message"]]
    assert (finished["table"], finished["run"], finished["rows"]) == (table.name, run, 2)
    assert isinstance(finished["seconds"], float)
