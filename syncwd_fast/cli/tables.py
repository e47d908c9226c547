"""``tables list|show|remove|repartition``."""

from __future__ import annotations

import click
import orjson

from ..report import dead_letter_count
from .app import main
from .options import discover_option, json_option, open_redis, option, redis_options
from .output import log


@main.group("tables")
def tables_group() -> None:
    """List, show, remove or repartition the tables under a prefix.

    Exit codes: 0 done (or a declined prompt: nothing changed); 2 usage,
    configuration or a refusal that says what to do first (nothing changed);
    3 a Redis fault."""


@tables_group.command("list")
@redis_options
@discover_option("Also list tables the registry lost (found by a SCAN for their partitions' meta).")
@json_option("Print one JSON object a table: name, partitions, key, ttl, version_column, registered, backlog.")
def tables_list(redis_url: str, cluster: bool | None, prefix: str, discover: bool, as_json: bool) -> None:
    """List every table: its registry entry and what waits of it.

    \b
    Example:
        syncwd-fast tables list --redis redis://localhost:6379/0
    """
    from ..tables_admin import list_tables

    for t in list_tables(open_redis(redis_url, cluster), prefix=prefix, discover=discover):
        if as_json:
            click.echo(orjson.dumps(t).decode())
            continue
        b = t["backlog"]
        lost = "" if t["registered"] else " (unregistered: found in partition meta)"
        click.echo(
            f"{t['name']}: key={','.join(t['key'])} partitions={t['partitions']} ttl={t['ttl']}"
            f" version_column={t['version_column']}; {b['dirty']} dirty, {b['in_run']} in a run,"
            f" {b['inflight']} in flight, {b['dead']} dead{lost}"
        )


@tables_group.command("show")
@redis_options
@click.argument("table")
@json_option("Print one JSON object: name, registered, entry, partitions (one object each).")
def tables_show(redis_url: str, cluster: bool | None, prefix: str, table: str, as_json: bool) -> None:
    """Show TABLE's registry entry and each partition's keys: dirty, in a run,
    in flight, dead, the entry its last writer had, who holds its lease.

    \b
    Example:
        syncwd-fast tables show player_progress --redis redis://localhost:6379/0
    """
    from ..tables_admin import show_table

    state = show_table(open_redis(redis_url, cluster), table, prefix=prefix)
    if as_json:
        click.echo(orjson.dumps(state).decode())
        return
    entry = state["entry"]
    click.echo(
        f"{table}: {'registered' if state['registered'] else 'not registered (found in partition meta)'}"
        + (
            f", key={','.join(entry['key'])} partitions={entry['partitions']} ttl={entry['ttl']}"
            f" version_column={entry['version_column']}"
            if entry
            else ", no readable entry"
        )
    )
    for p in state["partitions"]:
        extra = "".join(
            f", {label} {p[field]}"
            for field, label in (("run", "run"), ("held_by", "held by"), ("closed", "closed:"))
            if p[field]
        )
        click.echo(
            f"  partition {p['partition']}: {p['dirty']} dirty, {p['in_run']} in a run, {p['inflight']} in flight,"
            f" {p['dead']} dead{extra}"
        )


@tables_group.command("remove")
@redis_options
@click.argument("table")
@option(
    "--force",
    env="SYNCWD_FORCE",
    is_flag=True,
    help="Remove it even while records of it wait (dirty, in a run, in flight, dead-lettered): they are dropped,"
    " with their values, and counted.",
)
@option(
    "--values",
    env="SYNCWD_VALUES",
    is_flag=True,
    help="Also delete the cached values of its records that landed (default: they stay until their TTL).",
)
@option("--yes", env="SYNCWD_YES", is_flag=True, help="Do not ask for confirmation.")
@json_option("Print what was removed as one JSON object.")
def tables_remove(
    redis_url: str, cluster: bool | None, prefix: str, table: str, force: bool, values: bool, yes: bool, as_json: bool
) -> None:
    """Remove TABLE: its registry entry and every key of its partitions, so
    no drain looks at it and discovery cannot bring it back. Refused while a
    record of it waits, unless --force. Stop its writers first: a writer that
    still writes it brings it back. Asks for confirmation unless --yes.

    \b
    Example:
        syncwd-fast tables remove player_progres --redis redis://localhost:6379/0 --force --yes
    """
    from ..tables_admin import remove_table

    what = f"Remove table {table!r} under prefix {prefix!r}" + (
        ", dropping every record of it still waiting" if force else ""
    )
    if not yes and not click.confirm(what + "?", err=True):
        click.echo("Nothing removed.", err=True)
        return
    removed = remove_table(open_redis(redis_url, cluster), table, prefix=prefix, force=force, values=values)
    if as_json:
        click.echo(orjson.dumps(removed.to_dict()).decode())
        return
    dropped = (
        f"; dropped {removed.dirty} dirty, {removed.in_run} in a run, {removed.inflight} in flight,"
        f" {dead_letter_count(removed.dead)}"
        if force
        else ""
    )
    click.echo(
        f"removed table {table}: {removed.keys_deleted} keys deleted ({removed.values} values){dropped}"
        + ("" if removed.registered else " (it was not registered)")
    )


@tables_group.command("repartition")
@redis_options
@click.argument("table")
@option(
    "--partitions",
    env="SYNCWD_PARTITION_COUNT",
    type=click.IntRange(1, 16384),
    required=True,
    help="The new partition count.",
)
@json_option("Print what was done as one JSON object.")
def tables_repartition(
    redis_url: str, cluster: bool | None, prefix: str, table: str, partitions: int, as_json: bool
) -> None:
    """Give TABLE another partition count, moving its waiting records and
    cached values to their new partitions. Writers that still have the old
    count are refused from then on: restart them with the new one (see
    docs/operations.md, "A partition count change").

    \b
    Example:
        syncwd-fast tables repartition player_progress --partitions 16 --redis redis://localhost:6379/0
    """
    from ..repartition import repartition_table

    done = repartition_table(open_redis(redis_url, cluster), table, partitions, prefix=prefix)
    if as_json:
        click.echo(orjson.dumps(done.to_dict()).decode())
        return
    click.echo(
        f"{table}: {done.before} -> {done.after} partitions; {done.moved} waiting records and {done.cached}"
        f" cached values moved" + (f"; partitions {done.closed} closed to writers" if done.closed else "")
    )
    if done.missing:
        log.warning("%d dirty ids had no value (evicted?) and were left in their partition", done.missing)
