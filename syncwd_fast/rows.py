"""Turning application rows (dicts, dataclasses, pydantic models, plain
objects) into key values and JSON bytes."""

from __future__ import annotations

import decimal
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

from .keys import TOMBSTONE


def _default(obj: Any) -> Any:
    dump = getattr(obj, "model_dump", None)  # pydantic v2
    if callable(dump):
        return dump(mode="json")
    if isinstance(obj, decimal.Decimal):
        return str(obj)  # exact: PostgreSQL parses numeric from text
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if hasattr(obj, "__dict__"):
        return {k: v for k, v in vars(obj).items() if not k.startswith("_")}
    raise TypeError(f"cannot store a {type(obj).__name__} as JSON")


def field(row: Any, name: str) -> Any:
    """The value of column ``name`` in any supported kind of row."""
    try:
        if isinstance(row, Mapping):
            return row[name]
        return getattr(row, name)
    except (KeyError, AttributeError):
        raise ValueError(f"row has no key column {name!r}: {row!r:.200}") from None


def key_values(row: Any, key: tuple[str, ...]) -> list[Any]:
    values = [field(row, column) for column in key]
    for column, value in zip(key, values):
        if value is None:
            raise ValueError(f"key column {column!r} is None in row {row!r:.200}")
    return values


def encode(row: Any) -> bytes:
    """The row as a JSON object; anything else is refused here, not in the drain."""
    try:
        # The copy is exact-size: some orjson releases keep a 4 KiB buffer behind
        # every result, which would make batches of small rows cost 4 KiB each.
        data = bytes(memoryview(orjson.dumps(row, default=_default)))
    except TypeError as exc:
        raise ValueError(f"row cannot be stored as JSON: {exc}") from exc
    if not data.startswith(b"{"):
        raise ValueError(f"a row must serialize to a JSON object, got {data[:60]!r}")
    return data


def tombstone(key: tuple[str, ...], values: list[Any]) -> bytes:
    return TOMBSTONE + orjson.dumps(dict(zip(key, values)))
