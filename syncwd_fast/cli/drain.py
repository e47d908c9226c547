"""``drain`` and ``schedule``: a drainer from the options, run under signals, with progress and metrics."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import click

from ..drain import FastDrainer
from ..errors import ConfigurationError
from ..events import Observers
from ..interrupts import Interrupts
from ..progress import DrainProgress, progress_mode
from ..report import DrainReport
from ..sinks import Sink, SinkOptions, load_factory
from .app import main
from .options import (
    DURATION,
    batch_option,
    discover_option,
    json_option,
    open_redis,
    option,
    pop_option,
    redis_options,
    workers_option,
)
from .output import duration, emit, log, masker, quiet


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
    from ..metrics import DrainMetrics

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
    from ..schedule import Schedule, stamp, worst

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
