"""The version of the Redis key layout this package reads and writes, kept in
``P:layout`` so that writers and drainers of versions that do not agree on it
never share a prefix: one that finds another layout refuses at once
(ConfigurationError, CLI exit 2) rather than misread its keys. Bumped, with a
CHANGELOG entry, by every change to the layout that an older version would
misread. A prefix without the key was written before it existed (layout 1)."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from .errors import ConfigurationError

LAYOUT = 1


def layout_key(prefix: str) -> str:
    return f"{prefix}:layout"


def _refuse(prefix: str, found: Any) -> ConfigurationError:
    text = found.decode("utf-8", "replace") if isinstance(found, bytes) else str(found)
    return ConfigurationError(
        f"prefix {prefix!r} holds Redis key layout {text}; this syncwd-fast reads and writes layout {LAYOUT}:"
        " use a version of the same layout for every writer and drainer of a prefix (CHANGELOG.md)"
    )


def claim(redis: Any, prefix: str) -> None:
    """A writer's check: record this layout on a new prefix; refuse another."""
    pipe = redis.pipeline(transaction=False)
    pipe.setnx(layout_key(prefix), LAYOUT)
    pipe.get(layout_key(prefix))
    try:
        _, found = pipe.execute()
    except ResponseError as exc:
        _refuse_wrong_type(prefix, exc)
        raise
    if found is not None and found not in (str(LAYOUT).encode(), str(LAYOUT)):
        raise _refuse(prefix, found)


def check(redis: Any, prefix: str) -> None:
    """A drainer's check: refuse a prefix of another layout (none recorded: layout 1)."""
    try:
        found = redis.get(layout_key(prefix))
    except ResponseError as exc:
        _refuse_wrong_type(prefix, exc)
        raise
    if found is not None and found not in (str(LAYOUT).encode(), str(LAYOUT)):
        raise _refuse(prefix, found)


def _refuse_wrong_type(prefix: str, exc: ResponseError) -> None:
    """A key of another type where the layout should be: configuration, not a fault."""
    if "WRONGTYPE" in str(exc):
        raise ConfigurationError(
            f"{layout_key(prefix)} is not the string this syncwd-fast keeps there (another program's key under"
            f" prefix {prefix!r}?): {str(exc).strip()}"
        ) from exc
