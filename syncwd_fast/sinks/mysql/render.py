"""Stored values as stage rows for MariaDB/MySQL: the typing rule.

A record's value for a column becomes the text MariaDB's own
``JSON_VALUE(doc, '$.column')`` gives for it: a string's text, a number's
own text as the document spells it (``1.50`` stays ``1.50``, integers of any
size exact), ``1``/``0`` for ``true``/``false``; an object or array becomes
its compact JSON (no spaces, numbers as the document spells them,
characters as they are), and so does any value into a JSON column (a string
quoted, ``true`` as ``true``); JSON ``null`` is SQL NULL. MariaDB converts that text
to the column's type under strict SQL mode, as an ``INSERT`` of a string
does: a text the type refuses is the record's dead letter, with the server's
message. Three additions: a number or boolean into a BIT or YEAR column goes
as a number (a string there would mean its bytes, or a two-digit year); an
ISO 8601 string with a time zone offset (``Z``, ``+05:30``) into a DATETIME
or TIMESTAMP column is turned to UTC first (MariaDB refuses offsets; each
session's time zone is UTC); and of a key repeated in one document the last
counts, as in PostgreSQL.
"""

from __future__ import annotations

import datetime
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..records import read
from .schema import MySQLSchema

DELETE = -1  # the group of tombstones

_OFFSET = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|z|[+-]\d\d(?::?\d\d)?)\Z")


class Number(str):
    """A JSON number that is not a 64-bit integer, as its document spells it."""


class Raw(str):
    """A JSON number sent as a number, unquoted (into BIT and YEAR columns).
    Only ever the text of a number the JSON parser read: safe as SQL."""


def _exact(doc: bytes) -> Any:
    return json.loads(doc, parse_float=Number, parse_int=_int)


def _int(text: str) -> int | Number:
    value = int(text)
    return value if -(2**63) <= value < 2**64 and text != "-0" else Number(text)


def compact(value: Any) -> str:
    """Compact JSON of an object or array, numbers as their own text."""
    kind = type(value)
    if kind is dict:
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + compact(v) for k, v in value.items()) + "}"
    if kind is list:
        return "[" + ",".join(compact(v) for v in value) + "]"
    if kind is Number:
        return str.__str__(value)
    return json.dumps(value, ensure_ascii=False)  # str, int, bool, None, float


def _utc(text: str) -> str:
    """An ISO 8601 time with an offset as UTC, the way MariaDB reads a DATETIME."""
    try:
        moment = datetime.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return text  # MariaDB says what is wrong with it
    if moment.tzinfo is None:
        return text
    # isoformat pads the year to four digits (strftime's %Y may not: 50 would be 2050 to MariaDB)
    return moment.astimezone(datetime.timezone.utc).replace(tzinfo=None).isoformat(" ", "microseconds")


def render(kind: str, value: Any) -> str | None:
    """The text a column of ``kind`` gets for a JSON value (None: SQL NULL)."""
    if value is None:
        return None
    t = type(value)
    if kind == "j" and t is not dict and t is not list:
        return compact(value)  # a JSON column holds the value's JSON: "text" quoted, true as true
    if kind == "b":  # BIT, YEAR: numbers as numbers
        if t is bool:
            return Raw("1" if value else "0")
        if t is int:
            return Raw(str(value))
        if t is Number:
            return Raw(str.__str__(value))
        if t is float:
            return Raw(repr(value))
    if t is str:
        if kind == "t" and _OFFSET.match(value):
            return _utc(value)
        return value  # type: ignore[no-any-return]
    if t is bool:
        return "1" if value else "0"
    if t is int:
        return str(value)
    if t is Number:
        return str.__str__(value)
    if t is float:  # read by orjson where the document was too deep to read again
        return repr(value)
    if t is dict or t is list:
        try:
            return orjson.dumps(value).decode() if not _holds(value, inexact=False) else compact(value)
        except TypeError:  # deeper than orjson writes
            return compact(value)
    return str(value)


def _holds(value: Any, inexact: bool) -> bool:
    """Whether a nested value holds, with ``inexact``, a float or a 0
    (orjson's reading of a number whose text it does not keep: 1.50, or -0),
    else a Number (a number read again as its text)."""
    stack = [value]
    while stack:
        item = stack.pop()
        t = type(item)
        if (t is float or (t is int and item == 0)) if inexact else t is Number:
            return True
        if t is dict:
            stack.extend(item.values())
        elif t is list:
            stack.extend(item)
    return False


# (stage index, group, id, delete first, column texts in table order)
Item = tuple[int, int, str, bool, list[str | None]]


@dataclass
class Decoded:
    columns: list[tuple[str, ...]] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    dead: list[tuple[str, str]] = field(default_factory=list)
    replace: dict[str, str] = field(default_factory=dict)
    unknown: bool = False
    schema: MySQLSchema | None = None


class Decoder:
    """Per table: stored values as stage rows, grouped by the columns they carry."""

    def __init__(self, schema: MySQLSchema, strict: bool = False) -> None:
        self.schema = schema
        self.strict = strict
        self._position = {c.name: p for p, c in enumerate(schema.columns)}
        self._kinds = [c.kind for c in schema.columns]
        self._groups: dict[tuple[str, ...], int] = {}
        self._columns: list[tuple[str, ...]] = []
        self._shapes: dict[tuple[str, ...], tuple[tuple[tuple[int, str], ...], int, list[str]]] = {}
        self._key_carried = tuple((self._position[k], k) for k in schema.key)
        self._lock = threading.Lock()  # decoded ahead in one thread, again (after a reload) in another

    def _group(self, names: tuple[str, ...]) -> int:
        with self._lock:
            group = self._groups.get(names)
            if group is None:
                group = self._groups[names] = len(self._columns)
                self._columns.append(names)
            return group

    def _texts(
        self, row: dict[str, Any], carried: tuple[tuple[int, str], ...], exact: bool = False
    ) -> list[str | None] | None:
        """The stage texts of the columns a record carries; None when a value
        holds a float or is 0 (maybe ``-0``) and the document was not read
        exactly yet."""
        texts: list[str | None] = [None] * len(self._kinds)
        kinds = self._kinds
        for p, name in carried:
            value = row[name]
            t = type(value)
            if t is str and kinds[p] != "j" and kinds[p] != "t":
                texts[p] = value  # the common case, as render() has it
                continue
            if not exact and (
                t is float or (t is int and value == 0) or ((t is dict or t is list) and _holds(value, inexact=True))
            ):
                return None  # orjson's float lost its text, and its 0 may have been -0
            texts[p] = render(kinds[p], value)
        return texts

    def decode(self, ids: list[str], values: list[bytes | None], recreated: dict[str, str]) -> Decoded:
        out = Decoded(self._columns, schema=self.schema)
        for rid, raw in zip(ids, values):
            try:
                self._one(out, rid, raw, recreated)
            except Exception as exc:  # one record's trouble is its own dead letter
                out.replace.pop(rid, None)
                out.dead.append((rid, f"cannot be decoded: {type(exc).__name__}: {str(exc).strip()}"))
        return out

    def _shape(self, keys: tuple[str, ...]) -> tuple[tuple[tuple[int, str], ...], int, list[str]]:
        """What a layout of JSON keys means: (table position, name) of the
        columns it carries, their group, the keys that are no column."""
        known = self._shapes.get(keys)
        if known is None:
            if len(self._shapes) > 4096:  # rows of ever-new shapes must not grow memory
                self._shapes.clear()
            position = self._position
            names = tuple(sorted((k for k in keys if k in position), key=position.__getitem__))
            unknown = sorted(k for k in keys if k not in position)
            known = self._shapes[keys] = (tuple((position[n], n) for n in names), self._group(names), unknown)
        return known

    def _one(self, out: Decoded, rid: str, raw: bytes | None, recreated: dict[str, str]) -> None:
        got = read(self.schema.key, rid, raw)
        if isinstance(got, str):
            out.dead.append((rid, got))
            return
        deleting, row = got
        assert raw is not None
        doc = raw[1:] if deleting else raw
        if deleting:
            carried = self._key_carried
            group = DELETE
        else:
            carried, group, unknown = self._shape(tuple(row))
            if unknown:
                out.unknown = True
                if self.strict:
                    out.dead.append((rid, f"not columns of {self.schema.table.name}: {', '.join(unknown)}"))
                    return
        texts = self._texts(row, carried)
        if texts is None:  # a number orjson read as a float: read the document again, numbers as their text
            try:
                texts = self._texts(_exact(doc), carried, exact=True)
            except (ValueError, RecursionError):  # too deep for that: orjson's reading stands
                texts = self._texts(row, carried, exact=True)
            assert texts is not None
        again = deleting or rid in recreated
        if not deleting and rid in recreated:
            out.replace[rid] = recreated[rid]
        out.items.append((len(out.items), group, rid, again, texts))
