"""What the operator's commands do, as functions (the CLI calls these):
``status``, and the dead letters' ``dead_letters`` / ``retry_dead_letters`` /
``purge_dead_letters``. Each takes a synchronous Redis client and the prefix
the writers use."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .connection import require_sync
from .deadletter import DeadLetter, Retried, list_dead, purge_dead, retry_dead_records
from .keys import DEFAULT_PREFIX, validate_prefix
from .status import status_report


def status(
    redis: Any, *, prefix: str = DEFAULT_PREFIX, tables: Iterable[str] | None = None, discover: bool = False
) -> dict[str, Any]:
    """What ``syncwd-fast status --json`` prints: ``{"tables": {name: {...}},
    "warnings": [...]}`` (README: every field)."""
    require_sync(redis, "status")
    return status_report(redis, validate_prefix(prefix), tables, discover)


def dead_letters(
    redis: Any, *, prefix: str = DEFAULT_PREFIX, tables: Iterable[str] | None = None
) -> Iterator[DeadLetter]:
    """Every dead letter of ``tables`` (default every table), as ``dead-letter list`` shows them."""
    require_sync(redis, "dead_letters")
    return list_dead(redis, validate_prefix(prefix), tables)


def retry_dead_letters(
    redis: Any, *, prefix: str = DEFAULT_PREFIX, tables: Iterable[str] | None = None, ids: Iterable[str] | None = None
) -> Retried:
    """Mark dead letters dirty again, for the next drain (``dead-letter retry``):
    how many per table, and the ``ids`` that were no dead letters."""
    require_sync(redis, "retry_dead_letters")
    return retry_dead_records(redis, validate_prefix(prefix), tables, ids)


def purge_dead_letters(
    redis: Any, *, prefix: str = DEFAULT_PREFIX, tables: Iterable[str] | None = None, ids: Iterable[str] | None = None
) -> int:
    """Forget dead letters (``dead-letter purge``); their values get the cache
    TTL unless a newer value waits to be drained. Returns how many."""
    require_sync(redis, "purge_dead_letters")
    return purge_dead(redis, validate_prefix(prefix), tables, ids)
