"""``dead-letter list|retry|purge``."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict

from ..errors import ConfigurationError
from ..report import DrainReport, dead_letter_count
from ..sinks import POSTGRES_SCHEMES, builtin_sink, scheme
from .app import main
from .drain import make_drainer, new_progress, run_drain
from .options import DURATION, json_option, open_redis, option, pop_option, redis_options, table_option
from .output import duration, emit, log


@main.group("dead-letter")
def dead_letter() -> None:
    """List, retry or purge records that could not be merged."""


def dead_letter_options(f: Any) -> Any:
    return redis_options(table_option(f))


def id_option(f: Any) -> Any:
    return option(
        "--id",
        "ids",
        env="SYNCWD_ID",
        multiple=True,
        help="Only this record id (repeatable; the variable takes ids separated by spaces).",
    )(f)


@dead_letter.command("list")
@dead_letter_options
@option(
    "--error",
    "error_text",
    env="SYNCWD_ERROR",
    default=None,
    help="Only dead letters whose reason contains this text (any case).",
)
@option(
    "--limit",
    env="SYNCWD_LIMIT",
    type=click.IntRange(min=0),
    default=None,
    help="Show at most this many (the count says how many match).",
)
@option(
    "--count",
    "count_only",
    env="SYNCWD_COUNT",
    is_flag=True,
    help="Print only how many dead letters match, per table and in all.",
)
@json_option(
    "One JSON object per line: table, partition, id, error, value (the record's JSON, or its text when it is no"
    " JSON: value_is_json says which), at, attempts. With --count: one object {total, tables}."
)
def dead_letter_list(
    redis_url: str,
    cluster: bool | None,
    prefix: str,
    tables: tuple[str, ...],
    error_text: str | None,
    limit: int | None,
    count_only: bool,
    as_json: bool,
) -> None:
    """Show each dead letter with the reason it was refused, then how many
    there are.

    \b
    Example:
        syncwd-fast dead-letter list --redis redis://localhost:6379/0 --table player_progress --json
        syncwd-fast dead-letter list --error "check constraint" --limit 20
    """
    from ..admin import dead_letters

    wanted = error_text.casefold() if error_text else None
    shown, per_table = 0, dict[str, int]()
    for entry in dead_letters(open_redis(redis_url, cluster), prefix=prefix, tables=tables or None):
        if wanted is not None and wanted not in entry.error.casefold():
            continue
        per_table[entry.table] = per_table.get(entry.table, 0) + 1
        if count_only or (limit is not None and shown >= limit):
            continue
        shown += 1
        if as_json:
            click.echo(orjson.dumps(dead_letter_json(entry)).decode())
        else:
            value = entry.value if entry.value is None or len(entry.value) <= 80 else entry.value[:77] + "..."
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.at))
            click.echo(
                f"{entry.table} id={entry.id} attempts={entry.attempts} at={when}\n"
                f"  error: {entry.error}\n  value: {value}"
            )
    total = sum(per_table.values())
    if count_only:
        if as_json:
            click.echo(orjson.dumps({"total": total, "tables": per_table}).decode())
        else:
            for name, n in per_table.items():
                click.echo(f"{name}: {n}")
            click.echo(f"total: {total}")
    elif not as_json:
        click.echo(dead_letter_count(total) + (f", {shown} shown" if shown < total else ""))


def dead_letter_json(entry: Any) -> dict[str, Any]:
    """A dead letter for --json: its value as the record's JSON where it is
    JSON (not a string holding JSON), else as its text."""
    out: dict[str, Any] = entry.to_dict()
    out["value_is_json"] = False
    if entry.value is not None:
        try:
            out["value"] = orjson.loads(entry.value)
            out["value_is_json"] = True
        except orjson.JSONDecodeError:
            pass
    return out


def what_tables(tables: tuple[str, ...]) -> str:
    return ", ".join(tables) if tables else "any table"


@dead_letter.command("retry")
@dead_letter_options
@id_option
@option("--dsn", env="SYNCWD_DSN", default=None, help="Drain the retried tables (only those) at once.")
@pop_option("With --dsn: ids per Redis call of the drain (as drain --pop).")
@json_option("With --dsn: print the drain report as JSON.")
def dead_letter_retry(
    redis_url: str,
    cluster: bool | None,
    prefix: str,
    tables: tuple[str, ...],
    ids: tuple[str, ...],
    dsn: str | None,
    pop: int,
    as_json: bool,
) -> None:
    """Put dead letters back in the dirty set with their current values (fix
    the cause first); with --dsn, drain the tables that had any at once. An
    entry leaves the dead-letter list when its record lands. An --id that is
    no dead letter of the tables asked for is named in a warning.

    \b
    Example:
        syncwd-fast dead-letter retry --redis redis://localhost:6379/0 --dsn "dbname=app"
    """
    from ..admin import retry_dead_letters

    if dsn:  # a DSN that cannot work is said before anything is marked dirty
        if scheme(dsn) in ("", *POSTGRES_SCHEMES):
            try:
                conninfo_to_dict(dsn)
            except psycopg.ProgrammingError as exc:
                raise ConfigurationError(f"invalid PostgreSQL DSN: {str(exc).strip()}") from exc
        else:
            builtin_sink(dsn)
    client = open_redis(redis_url, cluster)
    retried = retry_dead_letters(client, prefix=prefix, tables=tables or None, ids=ids or None)
    click.echo(f"{dead_letter_count(retried.count)} marked dirty again", err=as_json)
    if retried.not_found:
        shown = ", ".join(retried.not_found[:10]) + (" ..." if len(retried.not_found) > 10 else "")
        missing = len(retried.not_found)
        log.warning("%d id(s) asked for are no dead letters of %s: %s", missing, what_tables(tables), shown)
    if dsn:
        if not retried.tables:  # nothing marked: a drain would take every table's backlog instead
            click.echo("nothing to drain", err=True)
            emit(DrainReport(), as_json)
            return
        drainer = make_drainer(
            redis_url=redis_url,
            cluster=cluster,
            prefix=prefix,
            dsn=dsn,
            batch=5000,
            tables=tuple(retried.tables),
            workers=1,
            lease_seconds=30.0,
            strict=False,
            retries=5,
            pop=pop,
            observer=(progress := new_progress(as_json)),
        )
        report = run_drain(drainer, as_json, progress)
        emit(report, as_json)
        sys.exit(report.exit_code)


@dead_letter.command("purge")
@dead_letter_options
@id_option
@option(
    "--older-than",
    env="SYNCWD_OLDER_THAN",
    type=DURATION,
    default=None,
    help="Only dead letters made at least this long ago, e.g. 30d, 12h.",
)
@option("--yes", env="SYNCWD_YES", is_flag=True, help="Do not ask for confirmation.")
def dead_letter_purge(
    redis_url: str,
    cluster: bool | None,
    prefix: str,
    tables: tuple[str, ...],
    ids: tuple[str, ...],
    older_than: float | None,
    yes: bool,
) -> None:
    """Forget dead letters for good (their values stay readable in Redis
    until the cache TTL ends). Asks for confirmation unless --yes.

    \b
    Example:
        syncwd-fast dead-letter purge --redis redis://localhost:6379/0 --table player_progress --yes
        syncwd-fast dead-letter purge --older-than 30d --yes
    """
    from ..admin import purge_dead_letters

    what = f"{'ids ' + ', '.join(ids) if ids else 'all dead letters'} of {', '.join(tables) or 'every table'}"
    if older_than is not None:
        what += f" made over {duration(older_than)} ago"
    if not yes and not click.confirm(f"Purge {what} under prefix {prefix!r}?", err=True):
        # Declining is no failure: exit 0, as nothing was asked of Redis (1 is the drain's "dead letters").
        click.echo("Nothing purged.", err=True)
        return
    client = open_redis(redis_url, cluster)
    n = purge_dead_letters(client, prefix=prefix, tables=tables or None, ids=ids or None, older_than=older_than)
    click.echo(f"{dead_letter_count(n)} purged")
