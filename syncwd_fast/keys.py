"""The Redis key layout, identifiers and canonical record ids (design §2).

Every key of one partition carries the hash tag ``{T:n}`` so that the whole
partition lives in one Redis Cluster slot and one Lua script may touch it all.
"""

from __future__ import annotations

import decimal
import re
import uuid
import zlib
from collections.abc import Sequence
from typing import Any

import orjson

DEFAULT_PREFIX = "syncwd"

# A tombstone starts with a byte no JSON object can start with and carries the
# key columns, so the drain can delete without the old row.
TOMBSTONE = b"~"

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_PREFIX = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")


def validate_identifier(name: str, what: str = "identifier") -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise ValueError."""
    if not isinstance(name, str) or not _IDENT.match(name):
        raise ValueError(
            f"invalid {what} {name!r}: use letters, digits and underscores, "
            "not starting with a digit, at most 63 characters"
        )
    return name


def validate_table_name(name: str) -> str:
    """``table`` or ``schema.table``, each part a plain identifier."""
    if not isinstance(name, str):
        raise ValueError(f"invalid table name {name!r}")
    parts = name.split(".")
    if len(parts) > 2:
        raise ValueError(f"invalid table name {name!r}: use table or schema.table")
    for part in parts:
        validate_identifier(part, "table name")
    return name


def validate_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ValueError(f"invalid key prefix {prefix!r}: letters, digits, '_', '.', '-' only")
    return prefix


def json_default(obj: Any) -> Any:
    """orjson's ``default`` for stored rows: what orjson cannot serialize itself.
    Here rather than in rows.py so that ids and rows share it without a cycle."""
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


def canonical_id(values: Sequence[Any]) -> str:
    """The record id: a single key's text, or a JSON array for several columns.

    The one rendering of ids: the writer calls it on the application's key
    values, the drain on the values parsed from the stored JSON, and both must
    agree. So a value is first made what it becomes in the stored JSON (UUID,
    date, datetime, time, Decimal -> their strings, enums -> their values),
    then a str is itself, an int its decimal text, anything else its JSON text.
    """
    if len(values) == 1:
        value = values[0]
        if type(value) is str:  # the common cases: no JSON round trip
            return value
        if type(value) is int:
            return str(value)
        try:
            stored: object = orjson.loads(orjson.dumps(value, default=json_default))
        except TypeError as exc:
            raise ValueError(f"key value cannot be stored as JSON: {exc}") from exc
        if type(stored) is str:
            return stored
        if type(stored) is int:
            return str(stored)
        return orjson.dumps(stored).decode()
    try:
        # The array of the stored JSON values: orjson renders a value the same
        # whether it is given the Python object or its parsed JSON.
        return orjson.dumps(list(values), default=json_default).decode()
    except TypeError as exc:
        raise ValueError(f"key value cannot be stored as JSON: {exc}") from exc


def partition_of(record_id: str, partitions: int) -> int:
    if partitions == 1:
        return 0
    return zlib.crc32(record_id.encode()) % partitions


def registry_key(prefix: str) -> str:
    return f"{prefix}:tables"


# A field of the registry no table name can take: a random token that writers
# set when they create the registry (HSETNX), so that a registry lost and
# created again has a new one, and a drain knows to look for tables it lost.
REGISTRY_EPOCH = "~epoch"


def discovered_key(prefix: str) -> str:
    """The registry epoch under which a drain last looked for lost tables."""
    return f"{prefix}:discovered"


def new_epoch() -> str:
    return uuid.uuid4().hex


class PartitionKeys:
    """Names of every key of one partition ``P:{T:n}:...``."""

    __slots__ = (
        "base",
        "dead",
        "dirty",
        "lease",
        "meta",
        "number",
        "prefix",
        "recreated",
        "run_prefix",
        "table",
        "tombs",
        "value_prefix",
    )

    def __init__(self, prefix: str, table: str, number: int) -> None:
        self.prefix = prefix
        self.table = table
        self.number = number
        self.base = f"{prefix}:{{{table}:{number}}}:"
        self.dirty = self.base + "dirty"
        self.meta = self.base + "meta"
        self.lease = self.base + "lease"
        self.dead = self.base + "dead"
        self.tombs = self.base + "tombs"  # ids whose pending value is a tombstone
        self.recreated = self.base + "recreated"  # id -> generation of a new row after a delete
        self.value_prefix = self.base + "v:"
        self.run_prefix = self.base + "run:"

    def value(self, record_id: str) -> str:
        return self.value_prefix + record_id

    def run(self, run_id: str) -> str:
        return self.run_prefix + run_id

    def inflight(self, run_id: str) -> str:
        return self.run_prefix + run_id + ":inflight"

    def __repr__(self) -> str:
        return f"PartitionKeys({self.base!r})"
