"""The ``syncwd-fast`` command: a few lines over the Python API per command.

Every option reads one environment variable, shown in ``--help``. With
``--json`` the last line of stdout is always the JSON report, whatever the
exit code, usage errors included."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import click
import orjson
import psycopg
from psycopg.conninfo import conninfo_to_dict

from . import logs, speedups
from .drain import FastDrainer
from .errors import ConfigurationError, DrainFault
from .events import Observers
from .faults import configuration_problem, is_transient
from .interrupts import Interrupts
from .keys import DEFAULT_PREFIX
from .masking import Masker
from .progress import DrainProgress, progress_mode
from .redis_connect import connect_redis
from .report import EXIT_FAULT, EXIT_USAGE, DrainReport
from .sentinel import is_sentinel_url, redis_from_sentinel, redis_from_sentinel_url
from .servers import DEFAULT_REDIS_URL
from .sinks import POSTGRES_SCHEMES, Sink, SinkOptions, builtin_sink, load_factory, scheme

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


class Main(click.Group):
    """Turns library errors into messages and exit codes, passwords masked;
    with --json, a report line on stdout whatever went wrong."""

    def invoke(self, ctx: click.Context) -> Any:
        args = [*getattr(ctx, "_protected_args", ()), *ctx.args]  # the subcommand and its arguments
        kind = REPORTING.get(tuple(args[:1])) or REPORTING.get(tuple(args[:2]))
        reporting = kind if kind and json_requested(args) else None
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.exceptions.Abort:
            raise
        except click.UsageError as exc:
            if reporting:
                emit_error(reporting, exc.format_message(), EXIT_USAGE)
            raise
        except click.ClickException:
            raise
        except (ConfigurationError, ValueError) as exc:
            failure: UsageFailure = UsageFailure(str(exc).strip())
        except DrainFault as exc:
            failure = FaultFailure(str(exc).strip())
        except Exception as exc:
            problem = configuration_problem(exc)
            if problem:
                failure = UsageFailure(problem)
            elif is_transient(exc):
                failure = FaultFailure(f"{type(exc).__name__}: {str(exc).strip()}")
            else:  # never a bare traceback
                log.debug("unexpected error", exc_info=True)
                failure = FaultFailure(f"unexpected {type(exc).__name__}: {str(exc).strip()}")
        if reporting:
            emit_error(reporting, failure.message, failure.exit_code)
        raise failure


F = TypeVar("F", bound=Callable[..., Any])


def option(*decls: str, env: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option that reads one documented environment variable."""
    return click.option(*decls, envvar=env, show_envvar=True, **kwargs)


SENTINEL = "syncwd_fast.sentinel"  # ctx.meta key: --sentinel, --service, --sentinel-password


def open_redis(redis_url: str, cluster: bool | None) -> Any:
    """The client for --redis: the master Sentinel names (--sentinel/--service
    or a redis+sentinel:// URL), else a cluster's when the URL names a cluster
    node (detected unless --cluster/--no-cluster says), else a plain one."""
    masker.add(redis_url)
    ctx = click.get_current_context(silent=True)
    through = dict(ctx.meta.get(SENTINEL, {})) if ctx else {}
    if any(through.values()) or is_sentinel_url(redis_url):
        return open_sentinel(redis_url, cluster, **through)
    return connect_redis(redis_url, cluster=cluster)


def open_sentinel(
    redis_url: str,
    cluster: bool | None,
    sentinel: str | None = None,
    service: str | None = None,
    sentinel_password: str = "",
) -> Any:
    """The master a --sentinel/--service pair or a redis+sentinel:// URL names."""
    if sentinel_password and len(sentinel_password) >= 3:
        masker.secrets.add(sentinel_password)
    if cluster:
        raise ConfigurationError("--cluster with Sentinel: a Redis Cluster has no sentinels, drop one or the other")
    if is_sentinel_url(redis_url):
        if sentinel or service:
            raise ConfigurationError("--redis is a redis+sentinel:// URL: give it or --sentinel/--service, not both")
        return redis_from_sentinel_url(redis_url, sentinel_password=sentinel_password or None)
    if not sentinel:
        raise ConfigurationError("--service needs --sentinel (SYNCWD_SENTINEL): the sentinels to ask for its master")
    return redis_from_sentinel(
        sentinel, service or "", redis_url=redis_url, sentinel_password=sentinel_password or None
    )


def _keep_sentinel(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """--sentinel and its kin are read by open_redis, not passed to each command."""
    ctx.meta.setdefault(SENTINEL, {})[str(param.name)] = value
    return value


def redis_options(f: Any) -> Any:
    f = option("--prefix", env="SYNCWD_PREFIX", default=DEFAULT_PREFIX, show_default=True, help="Redis key prefix.")(f)
    f = option(
        "--cluster/--no-cluster",
        env="SYNCWD_REDIS_CLUSTER",
        default=None,
        help="Force a Redis Cluster client (--cluster) or a plain one (--no-cluster). Default: detected from the"
        " node the URL names (INFO cluster).",
    )(f)
    f = option(
        "--sentinel-password",
        env="SYNCWD_SENTINEL_PASSWORD",
        default="",
        expose_value=False,
        callback=_keep_sentinel,
        help="Password of the sentinels themselves (their requirepass); the master's is in --redis.",
    )(f)
    f = option(
        "--service",
        env="SYNCWD_SERVICE",
        default=None,
        expose_value=False,
        callback=_keep_sentinel,
        help="Name of the master the sentinels monitor (with --sentinel).",
    )(f)
    f = option(
        "--sentinel",
        env="SYNCWD_SENTINEL",
        default=None,
        metavar="HOST:PORT[,HOST:PORT]",
        expose_value=False,
        callback=_keep_sentinel,
        help="Reach the master through these Redis Sentinels (with --service); --redis then gives only the master's"
        " user, password, database and TLS. Or --redis redis+sentinel://host:port,host:port/service/db.",
    )(f)
    f = option(
        "--redis", "redis_url", env="SYNCWD_REDIS_URL", default=DEFAULT_REDIS_URL, show_default=True, help="Redis URL."
    )(f)
    return f


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    package_name="syncwd-fast",
    message=f"%(prog)s %(version)s (speedups: {speedups.describe()})",
)
@option(
    "--log-level",
    env="SYNCWD_LOG_LEVEL",
    type=click.Choice(logs.LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="Messages at this level and above (stderr).",
)
@option(
    "--log-format",
    env="SYNCWD_LOG_FORMAT",
    type=click.Choice(logs.FORMATS),
    default="text",
    show_default=True,
    help="text: a line with the time; json: one object a line (time, level, logger, message, and table, partition,"
    " run, rows, seconds where known). Passwords are masked in both.",
)
@option(
    "--quiet",
    "-q",
    env="SYNCWD_QUIET",
    is_flag=True,
    help="Errors only: no warnings, no progress line, no summary (--json output is printed all the same).",
)
@click.pass_context
def main(ctx: click.Context, log_level: str, log_format: str, quiet: bool) -> None:
    """Keep hot records in Redis and drain them to PostgreSQL in bulk.

    These options go before the command (syncwd-fast --quiet drain ...), or
    in their environment variables."""
    ctx.obj = {"quiet": quiet}
    logs.configure("error" if quiet else log_level, log_format, masker)


def pop_option(what: str) -> Callable[[F], F]:
    """--pop: ids per Redis call of a drain (FastDrainer(pop=))."""
    return option("--pop", env="SYNCWD_POP", type=click.IntRange(1, 5000), default=125, show_default=True, help=what)


def discover_option(what: str) -> Callable[[F], F]:
    return option("--discover", is_flag=True, env="SYNCWD_DISCOVER", help=what)


def json_option(what: str) -> Callable[[F], F]:
    return option("--json", "as_json", is_flag=True, env="SYNCWD_JSON", help=what)


batch_option = option(
    "--batch",
    env="SYNCWD_BATCH",
    type=click.IntRange(1, 100_000),
    default=5000,
    show_default=True,
    help="Records per transaction.",
)
workers_option = option(
    "--workers",
    env="SYNCWD_WORKERS",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Partitions drained in parallel.",
)


# click.ParamType is generic from click 8.2 on; 8.1 is supported, so not subscripted.
class Duration(click.ParamType):  # type: ignore[type-arg]
    """A span of time as schedule --every reads it (500ms, 10s, 5m, 12h, 30d), as seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        from .schedule import parse_interval

        try:
            return parse_interval(str(value))
        except ValueError as exc:
            self.fail(str(exc).replace("invalid interval", "invalid duration"), param, ctx)


DURATION = Duration()


def metrics_options(f: Any) -> Any:
    """--metrics-port/--metrics-addr: Prometheus metrics while draining (metrics.py)."""
    f = option(
        "--metrics-addr",
        env="SYNCWD_METRICS_ADDR",
        default="127.0.0.1",
        show_default=True,
        help="Address the metrics are served on; 0.0.0.0 (or ::) to be scraped from other hosts.",
    )(f)
    return option(
        "--metrics-port",
        env="SYNCWD_METRICS_PORT",
        type=click.IntRange(0, 65535),
        default=0,
        show_default=True,
        help="Serve Prometheus metrics on this port at /metrics (0: none; needs syncwd-fast[metrics]).",
    )(f)


def start_metrics(port: int, addr: str, options: dict[str, Any]) -> Any:
    """The metrics observer, serving, or None without --metrics-port."""
    if not port:
        return None
    from .metrics import DrainMetrics

    metrics = DrainMetrics(
        open_redis(options["redis_url"], options["cluster"]), options["prefix"], options["tables"] or None
    )
    metrics.serve(port, addr)
    return metrics


def drain_options(f: Any) -> Any:
    options = [
        option(
            "--dsn",
            env="SYNCWD_DSN",
            required=True,
            help="Where records go: a PostgreSQL connection string ('dbname=app', postgresql://...) or"
            " mysql://user:password@host:port/database (mariadb:// alike; needs syncwd-fast[mysql])."
            " Tables given a --sink go there; its factory gets this DSN too.",
        ),
        option(
            "--sink",
            "sinks",
            env="SYNCWD_SINK",
            multiple=True,
            metavar="TABLE=MODULE:FACTORY",
            help="Send TABLE's batches to a sink of your own: FACTORY(dsn, options) in MODULE returns a"
            " syncwd_fast.sinks.Sink (repeatable; the variable takes pairs separated by spaces)."
            " Other tables go to the built-in sink the DSN names.",
        ),
        batch_option,
        option(
            "--table",
            "tables",
            env="SYNCWD_TABLE",
            multiple=True,
            help="Drain only this table (repeatable; the variable takes names separated by spaces)."
            " Default: every registered table.",
        ),
        workers_option,
        option(
            "--lease-seconds",
            env="SYNCWD_LEASE_SECONDS",
            type=click.FloatRange(1.0, 3600),
            default=30.0,
            show_default=True,
            help="Partition lease, renewed while draining.",
        ),
        option(
            "--skip-busy",
            env="SYNCWD_SKIP_BUSY",
            is_flag=True,
            help="Report a partition whose lease another drainer holds as busy at once, without waiting to see"
            " whether that drainer is alive (for fleets that split partitions on purpose).",
        ),
        option(
            "--strict",
            env="SYNCWD_STRICT",
            is_flag=True,
            help="Dead-letter records with JSON keys that are not columns (default: ignore them).",
        ),
        discover_option(
            "Also drain tables the registry P:tables lost (found by a SCAN for their partitions' meta), and"
            " register them again; done anyway when the registry is empty or lacks a --table."
        ),
        pop_option(
            "Ids per Redis call (each pop, each ack). The default keeps the p99.9 of the calls under 2 ms; 500"
            " costs Redis and the drain less CPU per record, with calls of 2-5 ms at p99.9 that hold other clients up"
            " longer."
        ),
        option(
            "--retries",
            env="SYNCWD_RETRIES",
            type=click.IntRange(0, 100),
            default=5,
            show_default=True,
            help="Retries on a Redis or PostgreSQL fault before giving up (exit 3).",
        ),
        json_option("Print the report as one JSON object: the last line of stdout, whatever the exit code."),
        option(
            "--dead-letter-max",
            env="SYNCWD_DEAD_LETTER_MAX",
            type=click.IntRange(1),
            default=None,
            help="After the drain, keep at most this many dead letters per table, the newest; older ones are dropped"
            " for good, with a warning and a count in the report (default: no limit).",
        ),
        option(
            "--dead-letter-max-age",
            env="SYNCWD_DEAD_LETTER_MAX_AGE",
            type=DURATION,
            default=None,
            help="After the drain, drop dead letters older than this, e.g. 30d, 12h (default: no limit).",
        ),
    ]
    for opt in reversed(options):
        f = opt(f)
    return redis_options(f)


def make_drainer(
    redis_url: str,
    cluster: bool | None,
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
    sinks: tuple[str, ...] = (),
    pop: int = 125,
    dead_letter_max: int | None = None,
    dead_letter_max_age: float | None = None,
    observer: Any = None,
) -> FastDrainer:
    masker.add(dsn)
    options = SinkOptions(strict=strict, lease_seconds=lease_seconds)
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
        sinks=own_sinks(sinks, dsn, options),
        pop=pop,
        dead_letter_max=dead_letter_max,
        dead_letter_max_age=dead_letter_max_age,
        observer=observer,
    )


def own_sinks(specs: tuple[str, ...], dsn: str, options: SinkOptions) -> dict[str, Sink]:
    """``TABLE=package.module:factory`` pairs as {table: the factory's sink}."""
    sinks: dict[str, Sink] = {}
    for spec in specs:
        table, sep, factory = spec.partition("=")
        if not sep or not table.strip():
            raise ConfigurationError(f"--sink takes TABLE=package.module:factory, got {spec!r}")
        if table.strip() in sinks:
            raise ConfigurationError(f"--sink names {table.strip()!r} twice")
        sink = load_factory(factory.strip())(dsn, options)
        if not isinstance(sink, Sink):
            raise ConfigurationError(
                f"sink factory {factory.strip()!r} returned {sink!r}, not a syncwd_fast.sinks.Sink"
            )
        sinks[table.strip()] = sink
    return sinks


def new_progress(as_json: bool) -> DrainProgress:
    """Live bars on a terminal (stderr), lines on stdout off one, nothing with --json or --quiet."""
    return DrainProgress(progress_mode(as_json, quiet()), echo=lambda line: click.echo(masker(line)))


def run_drain(drainer: FastDrainer, as_json: bool, progress: DrainProgress | None = None) -> DrainReport:
    """One drain under SIGINT/SIGTERM: the first signal stops it after the
    batch in flight (report, exit 4); a second stops at once, releasing the
    leases it holds, printing the report so far. ``progress``: the drainer's
    observer that shows the drain; its display is up while the drain runs."""

    def first(name: str) -> None:
        log.warning("%s: stopping after the batch in flight (%s again to stop at once)", name, name)
        drainer.request_stop(name)

    def second(name: str) -> None:
        report = drainer.abandon(name)
        if progress:
            progress.stop()
        emit(report, as_json)
        sys.stderr.flush()
        os._exit(report.exit_code)

    with Interrupts(first, second) as interrupts:
        if progress:
            with progress:
                report = drainer.drain()
        else:
            report = drainer.drain()
        interrupts.done()
    return report


@main.command()
@drain_options
@metrics_options
def drain(as_json: bool, metrics_port: int, metrics_addr: str, **options: Any) -> None:
    """Move every dirty record to PostgreSQL, once per record.

    Exit codes: 0 all landed (busy partitions are reported, not errors);
    1 landed with dead letters or with tables that could not be drained;
    2 usage or configuration error; 3 aborted on a fault; 4 interrupted by
    SIGINT/SIGTERM (3 and 4: everything left is resumable).

    \b
    Example:
        syncwd-fast drain --redis redis://localhost:6379/0 --dsn "dbname=app" --batch 5000
    """
    progress = new_progress(as_json)
    metrics = start_metrics(metrics_port, metrics_addr, options)
    report = run_drain(make_drainer(**options, observer=Observers(progress, metrics)), as_json, progress)
    emit(report, as_json)
    sys.exit(report.exit_code)


@main.command()
@drain_options
@option(
    "--every", env="SYNCWD_EVERY", help="Drain at this interval, e.g. 10s, 5m, 1h (from the end of the last drain)."
)
@option(
    "--cron",
    "cron_expr",
    env="SYNCWD_CRON",
    help='Drain at these times, a cron expression, e.g. "0 2 * * *" (local time; a 6th field, last, gives seconds).'
    " Cron times that pass while a drain runs are skipped, not run back to back.",
)
@option("--max-runs", env="SYNCWD_MAX_RUNS", type=click.IntRange(1), default=None, help="Stop after this many drains.")
@metrics_options
def schedule(
    as_json: bool,
    every: str | None,
    cron_expr: str | None,
    max_runs: int | None,
    metrics_port: int,
    metrics_addr: str,
    **options: Any,
) -> None:
    """Drain again and again, at an interval or on a cron schedule, until
    stopped. SIGINT/SIGTERM stop the drain under way after its batch in
    flight (a second signal at once) and end the schedule. A drain that
    aborts on a fault is reported and the next one resumes its work.

    Exits with the most severe code of its runs (2, 3, 1, 4, 0 in that order).

    \b
    Examples:
        syncwd-fast schedule --dsn "dbname=app" --every 10s
        syncwd-fast schedule --dsn "dbname=app" --cron "0 2 * * *"
    """
    from .schedule import Schedule, stamp, worst

    plan = Schedule.parse(every=every, cron=cron_expr)
    progress = new_progress(as_json)
    metrics = start_metrics(metrics_port, metrics_addr, options)
    drainer = make_drainer(**options, observer=Observers(progress, metrics))
    stop = threading.Event()
    codes: list[int] = []
    draining = threading.Event()

    def first(name: str) -> None:
        if draining.is_set():
            log.warning("%s: stopping after the batch in flight (%s again to stop at once)", name, name)
        else:
            log.info("%s: no drain under way; the schedule ends", name)
        stop.set()
        drainer.request_stop(name)

    def waiting(due: float) -> None:
        log.info("next drain at %s (in %s)", stamp(due), duration(due - plan.clock.now()))

    def second(name: str) -> None:
        report = drainer.abandon(name)
        progress.stop()
        emit(report, as_json)
        os._exit(worst([*codes, report.exit_code]))

    with Interrupts(first, second) as interrupts:
        for _ in plan.ticks(stop, waiting):
            draining.set()
            try:
                with progress:
                    report = drainer.drain()
            finally:
                draining.clear()
            codes.append(report.exit_code)
            if as_json:
                emit(report, True)
            else:
                click.echo(stamp(plan.clock.now()) + " " + report.summary().replace("\n", "\n  "))
            if (max_runs and len(codes) >= max_runs) or stop.is_set():
                break
        interrupts.done()
    sys.exit(worst(codes))


@main.group("dead-letter")
def dead_letter() -> None:
    """List, retry or purge records that could not be merged."""


def table_option(f: Any) -> Any:
    return option(
        "--table",
        "tables",
        env="SYNCWD_TABLE",
        multiple=True,
        help="Only this table (repeatable; the variable takes names separated by spaces).",
    )(f)


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
    from .admin import dead_letters

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
        click.echo(f"{total} dead letters" + (f", {shown} shown" if shown < total else ""))


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
    from .admin import retry_dead_letters

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
    click.echo(f"{retried.count} dead letters marked dirty again", err=as_json)
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
    from .admin import purge_dead_letters

    what = f"{'ids ' + ', '.join(ids) if ids else 'all dead letters'} of {', '.join(tables) or 'every table'}"
    if older_than is not None:
        what += f" made over {duration(older_than)} ago"
    if not yes and not click.confirm(f"Purge {what} under prefix {prefix!r}?"):
        # Declining is no failure: exit 0, as nothing was asked of Redis (1 is the drain's "dead letters").
        click.echo("Nothing purged.", err=True)
        return
    client = open_redis(redis_url, cluster)
    n = purge_dead_letters(client, prefix=prefix, tables=tables or None, ids=ids or None, older_than=older_than)
    click.echo(f"{n} dead letters purged")


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
    from .admin import record

    state = record(open_redis(redis_url, cluster), table, record_id, prefix=prefix)
    click.echo(orjson.dumps(state, option=orjson.OPT_INDENT_2).decode())


def duration(seconds: float) -> str:
    """A span of time as an operator reads it (its largest unit)."""
    whole = max(0, int(seconds))
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if whole >= size:
            return f"{whole // size} {unit}"
    return f"{whole} s"


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
    from .admin import status as table_status
    from .status_view import plain_lines, render_rich

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
    from .tables_admin import list_tables

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
    from .tables_admin import show_table

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
    from .tables_admin import remove_table

    what = f"Remove table {table!r} under prefix {prefix!r}" + (
        ", dropping every record of it still waiting" if force else ""
    )
    if not yes and not click.confirm(what + "?"):
        click.echo("Nothing removed.", err=True)
        return
    removed = remove_table(open_redis(redis_url, cluster), table, prefix=prefix, force=force, values=values)
    if as_json:
        click.echo(orjson.dumps(removed.to_dict()).decode())
        return
    dropped = (
        f"; dropped {removed.dirty} dirty, {removed.in_run} in a run, {removed.inflight} in flight,"
        f" {removed.dead} dead letters"
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
    from .repartition import repartition_table

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


@main.command()
@option(
    "--redis",
    "redis_url",
    env="SYNCWD_REDIS_URL",
    default=None,
    help="Redis URL; default: local, else a throwaway server.",
)
@option("--dsn", env="SYNCWD_DSN", default=None, help="PostgreSQL DSN; default: local, else a throwaway server.")
@option("--records", env="SYNCWD_RECORDS", type=click.IntRange(1), default=100_000, show_default=True, help="Records.")
@option(
    "--updates", env="SYNCWD_UPDATES", type=click.IntRange(1), default=1_000_000, show_default=True, help="Updates."
)
@batch_option
@workers_option
@option(
    "--namespace",
    env="SYNCWD_NAMESPACE",
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
