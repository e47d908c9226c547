"""Turning application rows (dicts, dataclasses, pydantic models, plain
objects) into key values and JSON bytes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .keys import TOMBSTONE
from .keys import json_default as _default  # shared with canonical_id: ids render what rows store


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


def stored_key_values(row: Any, key: tuple[str, ...], stored: bytes | None = None) -> list[Any]:
    """The key values as the stored JSON holds them, which is what the drain
    checks an id against: a model that serializes itself (pydantic writes a
    UTC datetime with "Z") must name its record the same way. ``stored``:
    the row's JSON when the caller has it already."""
    values = key_values(row, key)
    if _as_they_are(row, values):
        return values
    return key_values(orjson.loads(encode(row) if stored is None else stored), key)


def record(row: Any, key: tuple[str, ...]) -> tuple[list[Any], bytes]:
    """The row's stored key values and its JSON."""
    value = encode(row)
    return stored_key_values(row, key, value), value


def _as_they_are(row: Any, values: list[Any]) -> bool:
    """Whether key values are stored as they are: plain str and int, in a row
    that does not serialize itself (a pydantic serializer may rewrite any)."""
    return not callable(getattr(row, "model_dump", None)) and all(type(v) is str or type(v) is int for v in values)


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
    # The same serialization as rows: a Decimal or a model's key must not fail here.
    return TOMBSTONE + orjson.dumps(dict(zip(key, values)), default=_default)
