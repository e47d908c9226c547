"""``demo``: the main job end to end on a fresh machine."""

from __future__ import annotations

import sys

import click

from .app import main
from .options import (
    batch_option,
    option,
    workers_option,
)


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
    from ..demo import run_demo

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
