"""What the command line prints: reports, errors as --json lines, durations; passwords masked."""

from __future__ import annotations

import logging
import os
import sys

import click
import orjson

from ..masking import Masker
from ..report import EXIT_FAULT, EXIT_USAGE, DrainReport

masker = Masker()
log = logging.getLogger("syncwd_fast")
# Commands whose --json prints one report whatever happens: drain reports, or
# status's object.
REPORTING = {("drain",): "drain", ("schedule",): "drain", ("dead-letter", "retry"): "drain", ("status",): "status"}


def json_requested(args: list[str]) -> bool:
    if "--json" in args:
        return True
    try:  # the variable, read as click reads a flag's
        return bool(click.BOOL.convert(os.environ.get("SYNCWD_JSON") or "0", None, None))
    except click.BadParameter:
        return False


class UsageFailure(click.ClickException):
    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(masker(message))


class FaultFailure(UsageFailure):
    exit_code = EXIT_FAULT


def error_report(message: str, exit_code: int) -> DrainReport:
    """The report of a drain that could not run (usage, configuration) or
    ended on an error no one foresaw."""
    if exit_code == EXIT_USAGE:
        return DrainReport(error=message)
    return DrainReport(aborted=message)


def emit_error(kind: str, message: str, exit_code: int) -> None:
    """The --json line of a command that failed before it could report."""
    if kind == "status":
        click.echo(masker(orjson.dumps({"tables": {}, "warnings": [], "error": message}).decode()))
        sys.stdout.flush()
    else:
        emit(error_report(message, exit_code), True)


def quiet() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx and isinstance(ctx.find_root().obj, dict) and ctx.find_root().obj.get("quiet"))


def emit(report: DrainReport, as_json: bool) -> None:
    if not as_json and quiet():
        return
    text = orjson.dumps(report.to_dict()).decode() if as_json else report.summary()
    click.echo(masker(text))
    sys.stdout.flush()


def duration(seconds: float) -> str:
    """A span of time as an operator reads it (its largest unit)."""
    whole = max(0, int(seconds))
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if whole >= size:
            return f"{whole // size} {unit}"
    return f"{whole} s"
