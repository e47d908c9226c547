"""``status`` and ``get``: what waits in Redis, per table or for one record."""

from __future__ import annotations

import sys

import click
import orjson

from .app import main
from .options import discover_option, json_option, open_redis, option, redis_options, table_option
from .output import log


@main.command("get")
@redis_options
@click.argument("table")
@click.argument("record_id", metavar="ID")
def get_record(redis_url: str, cluster: bool | None, prefix: str, table: str, record_id: str) -> None:
    """Show one record's state in Redis, as JSON: its value and cache TTL,
    whether it waits to be drained (dirty), is in the run under way or in
    flight (popped, not yet committed), and its dead letter if any.

    \b
    Example:
        syncwd-fast get player_progress 7 --redis redis://localhost:6379/0
    """
    from ..admin import record

    state = record(open_redis(redis_url, cluster), table, record_id, prefix=prefix)
    click.echo(orjson.dumps(state, option=orjson.OPT_INDENT_2).decode())


@main.command()
@redis_options
@table_option
@discover_option(
    "Also show tables the registry P:tables lost (found by a SCAN for their partitions' meta); done anyway"
    " when the registry is empty or lacks a --table."
)
@option(
    "--partitions",
    "per_partition",
    env="SYNCWD_PARTITIONS",
    is_flag=True,
    help="Also a row per partition: backlog, active run, lease holder, last run.",
)
@json_option('Print one JSON object: {"tables": {name: {...}}, "warnings": [...]} (docs/operations.md: every field).')
def status(
    redis_url: str,
    cluster: bool | None,
    prefix: str,
    tables: tuple[str, ...],
    discover: bool,
    per_partition: bool,
    as_json: bool,
) -> None:
    """Show, per table (and with --partitions per partition), what waits to be
    drained: dirty, in a run, in flight, dead; how old the oldest waiting
    record is at most; the active runs, who holds which partition (and
    whether that drainer still runs), and the last runs. A table the registry
    lost is shown as unregistered; `drain --discover` registers it again.
    Warns (stderr, and "warnings" in --json) about Redis settings that lose
    or refuse writes and about a prefix with nothing registered. A table on a
    terminal, plain lines elsewhere.

    \b
    Example:
        syncwd-fast status --redis redis://localhost:6379/0 --partitions
    """
    from ..admin import status as table_status
    from ..status_view import plain_lines, render_rich

    result = table_status(
        open_redis(redis_url, cluster),
        prefix=prefix,
        tables=tables or None,
        discover=discover,
        partitions=per_partition,
    )
    for warning in result["warnings"]:
        log.warning("%s", warning)
    if as_json:
        click.echo(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS).decode())  # partition numbers as keys
        return
    if sys.stdout.isatty():
        from rich.console import Console

        render_rich(result, Console())
        return
    for line in plain_lines(result):
        click.echo(line)
