"""Which Redis and PostgreSQL the bench talks to, and cleaning up its keys.

Order: ``--redis`` / ``--dsn``, else ``SYNCWD_REDIS_URL`` / ``SYNCWD_DSN``, else
the local servers (Redis database 8, so the bench's keys stay apart from
other users' and its SCANs stay small), else throwaway servers.
"""

from __future__ import annotations

import os
import re
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from syncwd_fast.connection import redis_from_url
from syncwd_fast.servers import find_or_start, redis_reachable

LOCAL_REDIS = "redis://127.0.0.1:6379/8"
UNLINK_CHUNK = 5000


def resolve(redis_url: str | None, dsn: str | None) -> tuple[str, str, list[Any]]:
    """(redis url, dsn, throwaway servers to close when done)."""
    redis_url = redis_url or os.environ.get("SYNCWD_REDIS_URL") or None
    dsn = dsn or os.environ.get("SYNCWD_DSN") or None
    if redis_url is None and redis_reachable(LOCAL_REDIS):
        redis_url = LOCAL_REDIS
    return find_or_start(redis_url, dsn)


def redis_client(url: str) -> Any:
    # A long socket timeout: a pipelined chunk of 20k commands may take a while on a busy machine.
    return redis_from_url(url, timeout_s=120.0)


def clear_keys(client: Any, prefix: str) -> int:
    """UNLINK every key under ``prefix:`` (SCAN, never KEYS or FLUSHDB: the server is shared)."""
    removed = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=UNLINK_CHUNK):
        batch.append(key)
        if len(batch) == UNLINK_CHUNK:
            removed += client.unlink(*batch)
            batch = []
    if batch:
        removed += client.unlink(*batch)
    return int(removed)


def redacted_url(url: str) -> str:
    return re.sub(r"//([^/@]*)@", "//***@", url)


def redacted_dsn(dsn: str) -> str:
    params = conninfo_to_dict(dsn)
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)


def versions(client: Any, dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {"redis": str(client.info("server")["redis_version"]), "postgres": str(row[0]) if row else "?"}
