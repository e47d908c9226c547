"""The ``syncwd-fast`` command: a few lines over the Python API per command."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
import orjson
import psycopg
import redis

from .connection import redis_from_url
from .drain import FastDrainer
from .errors import ConfigurationError, DrainFault
from .keys import DEFAULT_PREFIX
from .masking import Masker, MaskingFilter
from .report import EXIT_FAULT, EXIT_USAGE, DrainReport
from .servers import DEFAULT_REDIS_URL

masker = Masker()


class UsageFailure(click.ClickException):
    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(masker(message))


class FaultFailure(UsageFailure):
    exit_code = EXIT_FAULT


class Main(click.Group):
    """Turns library errors into messages and exit codes, passwords masked."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigurationError, ValueError, psycopg.ProgrammingError) as exc:
            raise UsageFailure(str(exc).strip()) from exc
        except (redis.exceptions.RedisError, psycopg.OperationalError, DrainFault) as exc:
            raise FaultFailure(f"{type(exc).__name__}: {str(exc).strip()}") from exc


def open_redis(redis_url: str, cluster: bool) -> Any:
    masker.add(redis_url)
    return redis_from_url(redis_url, cluster=cluster)


def redis_options(f: Any) -> Any:
    f = click.option(
        "--prefix", envvar="SYNCWD_PREFIX", default=DEFAULT_PREFIX, show_default=True, help="Redis key prefix."
    )(f)
    f = click.option(
        "--cluster/--no-cluster",
        envvar="SYNCWD_REDIS_CLUSTER",
        default=False,
        help="Redis URL names a Redis Cluster node.",
    )(f)
    f = click.option(
        "--redis",
        "redis_url",
        envvar="SYNCWD_REDIS_URL",
        default=DEFAULT_REDIS_URL,
        show_default=True,
        help="Redis URL [env SYNCWD_REDIS_URL].",
    )(f)
    return f


def emit(report: DrainReport, as_json: bool) -> None:
    click.echo(masker(orjson.dumps(report.to_dict()).decode() if as_json else report.summary()))


class Progress:
    """One self-rewriting line on a terminal; silent otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.rows = 0
        self.started = time.perf_counter()
        self.shown = 0.0

    def __call__(self, table: str, partition: int, rows: int) -> None:
        self.rows += rows
        now = time.perf_counter()
        if self.enabled and now - self.shown > 0.2:
            self.shown = now
            rate = self.rows / max(now - self.started, 1e-9)
            click.echo(
                f"\r{self.rows:,} rows merged ({rate:,.0f} rows/s), now {table}/{partition}   ", nl=False, err=True
            )

    def done(self) -> None:
        if self.enabled and self.rows:
            click.echo("", err=True)


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "SYNCWD"})
@click.version_option(package_name="syncwd-fast")
def main() -> None:
    """Keep hot records in Redis and drain them to PostgreSQL in bulk."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("syncwd-fast: %(levelname)s: %(message)s"))
    handler.addFilter(MaskingFilter(masker))
    log = logging.getLogger("syncwd_fast")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


F = TypeVar("F", bound=Callable[..., Any])


def discover_option(what: str) -> Callable[[F], F]:
    return click.option("--discover", is_flag=True, envvar="SYNCWD_DISCOVER", help=f"{what} [env SYNCWD_DISCOVER].")


def drain_options(f: Any) -> Any:
    options = [
        click.option(
            "--dsn", envvar="SYNCWD_DSN", required=True, help="PostgreSQL connection string [env SYNCWD_DSN]."
        ),
        click.option(
            "--batch", type=click.IntRange(1, 100_000), default=5000, show_default=True, help="Records per transaction."
        ),
        click.option(
            "--table",
            "tables",
            multiple=True,
            help="Drain only this table (repeatable). Default: every registered table.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(1, 256),
            default=1,
            show_default=True,
            help="Partitions drained in parallel.",
        ),
        click.option(
            "--lease-seconds",
            type=click.FloatRange(1.0, 3600),
            default=30.0,
            show_default=True,
            help="Partition lease, renewed while draining.",
        ),
        click.option(
            "--skip-busy",
            is_flag=True,
            help="Report a partition whose lease another drainer holds as busy at once, without waiting to see"
            " whether that drainer is alive (for fleets that split partitions on purpose).",
        ),
        click.option(
            "--strict",
            is_flag=True,
            help="Dead-letter records with JSON keys that are not columns (default: ignore them).",
        ),
        discover_option(
            "Also drain tables the registry P:tables lost (found by a SCAN for their partitions' meta), and"
            " register them again; done anyway when the registry is empty or lacks a --table"
        ),
        click.option(
            "--retries",
            type=click.IntRange(0, 100),
            default=5,
            show_default=True,
            help="Retries on a Redis or PostgreSQL fault before giving up (exit 3).",
        ),
        click.option(
            "--json", "as_json", is_flag=True, help="Print the report as one JSON object (the last line of stdout)."
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return redis_options(f)


def make_drainer(
    redis_url: str,
    cluster: bool,
    prefix: str,
    dsn: str,
    batch: int,
    tables: tuple[str, ...],
    workers: int,
    lease_seconds: float,
    strict: bool,
    retries: int,
    skip_busy: bool = False,
    discover: bool = False,
    on_batch: Any = None,
) -> FastDrainer:
    masker.add(dsn)
    return FastDrainer(
        open_redis(redis_url, cluster),
        dsn,
        batch=batch,
        tables=tables or None,
        workers=workers,
        prefix=prefix,
        lease_seconds=lease_seconds,
        strict=strict,
        retries=retries,
        skip_busy=skip_busy,
        discover=discover,
        on_batch=on_batch,
    )


def run_drain(drainer: FastDrainer, progress: Progress | None = None) -> DrainReport:
    report = drainer.drain()
    if progress:
        progress.done()
    return report


@main.command()
@drain_options
def drain(as_json: bool, **options: Any) -> None:
    """Move every dirty record to PostgreSQL, once per record.

    Exit codes: 0 all landed (busy partitions are reported, not errors);
    1 landed with dead letters or with tables that could not be drained;
    2 usage or configuration error; 3 aborted on a fault (all left is resumable).

    \b
    Example:
        syncwd-fast drain --redis redis://localhost:6379/0 --dsn "dbname=app" --batch 5000
    """
    progress = Progress(enabled=not as_json and sys.stderr.isatty())
    report = run_drain(make_drainer(**options, on_batch=progress), progress)
    emit(report, as_json)
    sys.exit(report.exit_code)


@main.command()
@drain_options
@click.option("--every", help="Drain at this interval, e.g. 10s, 5m, 1h (counted from the end of the last drain).")
@click.option("--cron", "cron_expr", help='Drain at these times, a cron expression, e.g. "0 2 * * *" (local time).')
@click.option("--max-runs", type=click.IntRange(1), default=None, help="Stop after this many drains.")
def schedule(as_json: bool, every: str | None, cron_expr: str | None, max_runs: int | None, **options: Any) -> None:
    """Drain again and again, at an interval or on a cron schedule, until
    stopped (SIGINT/SIGTERM end it after the drain under way). A drain that
    aborts on a fault is reported and the next one resumes its work.

    \b
    Examples:
        syncwd-fast schedule --dsn "dbname=app" --every 10s
        syncwd-fast schedule --dsn "dbname=app" --cron "0 2 * * *"
    """
    from .schedule import Schedule

    plan = Schedule.parse(every=every, cron=cron_expr)
    drainer = make_drainer(**options)
    runs = 0
    for _ in plan.ticks():
        report = run_drain(drainer)
        runs += 1
        if as_json:
            emit(report, True)
        else:
            click.echo(time.strftime("%Y-%m-%d %H:%M:%S ") + report.summary().replace("\n", "\n  "))
        if max_runs and runs >= max_runs:
            break


@main.group("dead-letter")
def dead_letter() -> None:
    """List, retry or purge records that could not be merged."""


def dead_letter_options(f: Any) -> Any:
    f = click.option("--table", "tables", multiple=True, help="Only this table (repeatable).")(f)
    return redis_options(f)


@dead_letter.command("list")
@dead_letter_options
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per line: table, partition, id, error, value, at, attempts.",
)
def dead_letter_list(redis_url: str, cluster: bool, prefix: str, tables: tuple[str, ...], as_json: bool) -> None:
    """Show each dead letter with the reason it was refused.

    \b
    Example:
        syncwd-fast dead-letter list --redis redis://localhost:6379/0 --table player_progress --json
    """
    from .deadletter import list_dead

    for entry in list_dead(open_redis(redis_url, cluster), prefix, tables or None):
        if as_json:
            click.echo(orjson.dumps(entry.to_dict()).decode())
        else:
            value = entry.value if entry.value is None or len(entry.value) <= 80 else entry.value[:77] + "..."
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.at))
            click.echo(
                f"{entry.table} id={entry.id} attempts={entry.attempts} at={when}\n"
                f"  error: {entry.error}\n  value: {value}"
            )


@dead_letter.command("retry")
@dead_letter_options
@click.option("--id", "ids", multiple=True, help="Only this record id (repeatable).")
@click.option("--dsn", envvar="SYNCWD_DSN", default=None, help="Drain the retried tables at once [env SYNCWD_DSN].")
@click.option("--json", "as_json", is_flag=True, help="With --dsn: print the drain report as JSON.")
def dead_letter_retry(
    redis_url: str,
    cluster: bool,
    prefix: str,
    tables: tuple[str, ...],
    ids: tuple[str, ...],
    dsn: str | None,
    as_json: bool,
) -> None:
    """Put dead letters back in the dirty set with their current values (fix
    the cause first); with --dsn, drain them at once. An entry leaves the
    dead-letter list when its record lands.

    \b
    Example:
        syncwd-fast dead-letter retry --redis redis://localhost:6379/0 --dsn "dbname=app"
    """
    from .deadletter import retry_dead

    client = open_redis(redis_url, cluster)
    n = retry_dead(client, prefix, tables or None, ids or None)
    click.echo(f"{n} dead letters marked dirty again", err=as_json)
    if dsn:
        drainer = make_drainer(
            redis_url=redis_url,
            cluster=cluster,
            prefix=prefix,
            dsn=dsn,
            batch=5000,
            tables=tables,
            workers=1,
            lease_seconds=30.0,
            strict=False,
            retries=5,
        )
        report = run_drain(drainer)
        emit(report, as_json)
        sys.exit(report.exit_code)


@dead_letter.command("purge")
@dead_letter_options
@click.option("--id", "ids", multiple=True, help="Only this record id (repeatable).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def dead_letter_purge(
    redis_url: str, cluster: bool, prefix: str, tables: tuple[str, ...], ids: tuple[str, ...], yes: bool
) -> None:
    """Forget dead letters for good (their values stay readable in Redis
    until the cache TTL ends). Asks for confirmation unless --yes.

    \b
    Example:
        syncwd-fast dead-letter purge --redis redis://localhost:6379/0 --table player_progress --yes
    """
    from .deadletter import purge_dead

    what = f"{'ids ' + ', '.join(ids) if ids else 'all dead letters'} of {', '.join(tables) or 'every table'}"
    if not yes:
        click.confirm(f"Purge {what} under prefix {prefix!r}?", abort=True)
    n = purge_dead(open_redis(redis_url, cluster), prefix, tables or None, ids or None)
    click.echo(f"{n} dead letters purged")


@main.command()
@redis_options
@click.option("--table", "tables", multiple=True, help="Only this table (repeatable).")
@discover_option(
    "Also show tables the registry P:tables lost (found by a SCAN for their partitions' meta); done anyway"
    " when the registry is empty or lacks a --table"
)
@click.option("--json", "as_json", is_flag=True, help='Print one JSON object ("registered": false marks a lost table).')
def status(redis_url: str, cluster: bool, prefix: str, tables: tuple[str, ...], discover: bool, as_json: bool) -> None:
    """Show, per table, what waits to be drained: dirty, in a run, in flight, dead.
    A table the registry lost is shown as unregistered; `drain --discover` registers it again.

    \b
    Example:
        syncwd-fast status --redis redis://localhost:6379/0
    """
    from .status import table_status

    result = table_status(open_redis(redis_url, cluster), prefix, tables or None, discover)
    if as_json:
        click.echo(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS).decode())  # partition numbers as keys
        return
    if not result:
        click.echo(f"no tables registered under prefix {prefix!r}, and none found in partition meta")
    for name, t in result.items():
        lost = "" if t["registered"] else "; unregistered, found in partition meta: drain --discover registers it"
        click.echo(
            f"{name}: {t['dirty']} dirty, {t['in_run']} in a run, {t['inflight']} in flight, {t['dead']} dead "
            f"({t['partitions']} partitions{lost})"
        )


@main.command()
@click.option(
    "--redis",
    "redis_url",
    envvar="SYNCWD_REDIS_URL",
    default=None,
    help="Redis URL; default: local, else a throwaway server.",
)
@click.option(
    "--dsn", envvar="SYNCWD_DSN", default=None, help="PostgreSQL DSN; default: local, else a throwaway server."
)
@click.option("--records", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--updates", type=click.IntRange(1), default=1_000_000, show_default=True)
@click.option("--batch", type=click.IntRange(1, 100_000), default=5000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option(
    "--namespace",
    default="syncwd_demo",
    show_default=True,
    help="PostgreSQL schema and Redis key prefix the demo uses (and resets).",
)
def demo(
    redis_url: str | None, dsn: str | None, records: int, updates: int, batch: int, workers: int, namespace: str
) -> None:
    """Write UPDATES updates for RECORDS game records to Redis, drain them to
    PostgreSQL, check every row and print the report.

    \b
    Example:
        syncwd-fast demo --records 100000 --updates 1000000
    """
    from .demo import run_demo

    sys.exit(
        run_demo(
            redis_url,
            dsn,
            records=records,
            updates=updates,
            batch=batch,
            workers=workers,
            namespace=namespace,
            echo=click.echo,
        )
    )


if __name__ == "__main__":
    main()
