"""`syncwd-fast demo`: a game's hot records end to end, checked row by row."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from .drain import FastDrainer
from .keys import validate_identifier
from .redis_connect import connect_redis
from .servers import find_or_start
from .table import Table
from .writer import Syncwd

NAMESPACE = "syncwd_demo"  # the PostgreSQL schema and the Redis key prefix
DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
DROP TABLE IF EXISTS {table};
CREATE TABLE {table} (
    user_id    bigint PRIMARY KEY,
    level      int NOT NULL,
    score      bigint NOT NULL,
    coins      bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL,
    inventory  jsonb
)
"""


def _clear_redis(client: Any, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=10_000))
    for start in range(0, len(keys), 10_000):
        client.unlink(*keys[start : start + 10_000])


def run_demo(
    redis_url: str | None,
    dsn: str | None,
    *,
    records: int = 100_000,
    updates: int = 1_000_000,
    batch: int = 5000,
    workers: int = 1,
    namespace: str = NAMESPACE,
    echo: Callable[[str], None] = print,
) -> int:
    validate_identifier(namespace, "demo namespace")
    table = Table(f"{namespace}.player_progress", key="user_id", partitions=4)
    redis_url, dsn, started = find_or_start(redis_url, dsn)
    try:
        echo(f"redis {redis_url.split('@')[-1]}, postgres {_where(dsn)}{' (throwaway)' if started else ''}")
        client = connect_redis(redis_url)  # a cluster from any node, as the other commands
        _clear_redis(client, namespace)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL(DDL).format(
                    schema=sql.Identifier(namespace), table=sql.Identifier(namespace, "player_progress")
                )
            )

        writer = Syncwd(client, prefix=namespace)
        rng = random.Random(7)
        latest: dict[int, dict[str, Any]] = {}
        chunk: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        for n in range(updates):
            user = n % records if n < records else rng.randrange(records)
            row = {
                "user_id": user,
                "level": n // records + 1,
                "score": n,
                "coins": rng.randrange(10_000),
                "updated_at": f"2026-11-28T02:{(n // 60_000) % 60:02d}:{(n // 1000) % 60:02d}Z",
                "inventory": {"sword": n % 5, "potions": n % 11},
            }
            latest[user] = row
            chunk.append(row)
            if len(chunk) == 10_000:
                writer.update_many(table, chunk)
                chunk = []
        writer.update_many(table, chunk)
        write_s = time.perf_counter() - t0
        echo(
            f"wrote {updates:,} updates of {len(latest):,} records to Redis"
            f" in {write_s:.2f}s ({updates / write_s:,.0f}/s)"
        )

        report = FastDrainer(client, dsn, batch=batch, workers=workers, prefix=namespace).drain()
        echo(report.summary())

        with psycopg.connect(dsn) as conn:
            query = sql.SQL("SELECT user_id, level, score, coins FROM {}").format(
                sql.Identifier(namespace, "player_progress")
            )
            rows = conn.execute(query).fetchall()
        wrong = [r for r in rows if (r[1], r[2], r[3]) != tuple(latest[r[0]][c] for c in ("level", "score", "coins"))]
        if len(rows) != len(latest) or wrong:
            echo(f"CHECK FAILED: {len(rows)} rows in PostgreSQL, {len(latest)} expected, {len(wrong)} wrong")
            return 1
        again = FastDrainer(client, dsn, batch=batch, prefix=namespace).drain()
        echo(
            f"checked: all {len(rows):,} rows hold their latest value; "
            f"{updates:,} updates cost {report.upserted:,} row writes; a second drain found {again.upserted} to do"
        )
        return report.exit_code
    finally:
        for server in started:
            server.close()


def _where(dsn: str) -> str:
    """host:port/dbname of a DSN, never its password."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(DSN unreadable)"
    host = parts.get("host") or "local socket"
    return f"{host}:{parts.get('port') or 5432}/{parts.get('dbname') or parts.get('user') or 'default'}"
