"""Decode and validate a popped batch before any SQL: each value must be a
JSON object (or a tombstone) whose key columns render to its id; each record
becomes one line of the text COPY into the merge's stage.

A record whose every carried column renders exactly (render.py) carries them
typed (the stage's columns ``c0..cN-1``, its document NULL); any other goes
the jsonb path (its document, typed columns NULL). Records are grouped by
the columns they carry, whichever path they take (each statement reads both),
so which records meet in one statement never depends on the implementation.

This module is the readable specification of the C decoder
(``csrc/decode.c``): that one takes the common records itself and hands
every record it is not sure of to :meth:`Decoder.decode_one`, so both give
the same results.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from ... import speedups
from ..records import read
from .render import FLOAT8, NULL, SCALAR, copy_bytes, copy_text, render
from .schema import TableSchema

log = logging.getLogger("syncwd_fast")

DELETE = -1  # the group of tombstones
SCALARS = (SCALAR, FLOAT8)

# (group, id, the stored JSON document, the stage line)
Item = tuple[int, str, bytes, bytes]

# PostgreSQL's limit of 1600 columns less the stage's own i, g, del, doc: a
# wider target's records all go the jsonb path, through a stage without
# typed columns.
MAX_TYPED_COLUMNS = 1596


def typed_width(schema: TableSchema) -> int:
    """How many typed columns the stage of ``schema``'s table has."""
    return len(schema.columns) if len(schema.columns) <= MAX_TYPED_COLUMNS else 0


@dataclass
class Decoded:
    """A batch ready to merge. ``items[i]`` is stage row ``i``: its group
    indexes ``columns`` (the columns the record carries), or is DELETE."""

    columns: list[tuple[str, ...]] = field(default_factory=list)
    items: list[Item] = field(default_factory=list)
    dead: list[tuple[str, str]] = field(default_factory=list)
    # id -> generation: records that are a new row after a delete (write.lua)
    replace: dict[str, str] = field(default_factory=dict)
    # some record carries JSON keys that are not columns (yet: the schema may
    # have changed since it was read)
    unknown: bool = False
    schema: TableSchema | None = None  # the schema it was decoded against
    jsonb_only: bool = False  # every item is on the jsonb path
    jsonb: bool = False  # some item is on the jsonb path (else the merge reads the typed columns alone)

    def as_jsonb(self) -> Decoded:
        """The same records, every one on the jsonb path (when the typed COPY
        was refused: the jsonb path pins a bad value on its record)."""
        n = typed_width(self.schema) if self.schema else 0
        items: list[Item] = []
        for i, (g, rid, doc, _) in enumerate(self.items):
            items.append((g, rid, doc, jsonb_line(i, g, g == DELETE or rid in self.replace, doc, n)))
        return Decoded(self.columns, items, self.dead, self.replace, self.unknown, self.schema, True, bool(items))


def jsonb_line(i: int, g: int, delete: bool, doc: bytes, n: int) -> bytes:
    """The stage line of a record on the jsonb path."""
    return b"%d\t%d\t%s\t%s%s\n" % (i, g, b"t" if delete else b"f", copy_bytes(doc), b"\t\\N" * n)


# A digit then a point or an exponent: the document may hold a non-integer
# number (or a string that looks like one); only then is it read again.
_MAYBE_FLOAT = re.compile(rb"\d[.eE]")


class _Huge(Exception):
    pass


def _refuse_huge(text: str) -> float:
    mantissa, _, exponent = text.lower().partition("e")
    e = int(exponent) if exponent else 0
    whole, _, decimals = mantissa.lstrip("-").partition(".")
    if len(whole) + max(e, 0) > 100_000 or len(decimals) - min(e, 0) > 16_000:
        raise _Huge
    return 0.0


def holds_huge_number(doc: bytes) -> bool:
    """Whether the JSON text holds a number jsonb's numeric may refuse (more
    than 100000 digits before the point or 16000 after it, the exponent
    counted). orjson reads such a number as a float, so only the jsonb path
    may judge the record. The C scanner applies the same rule to each number."""
    if not _MAYBE_FLOAT.search(doc):
        return False
    try:
        json.loads(doc, parse_float=_refuse_huge)
    except _Huge:
        return True
    except (ValueError, RecursionError):
        return True  # not read the same way here: let the jsonb path judge
    return False


def has_nul_escape(doc: bytes) -> bool:
    """Whether the JSON text escapes a NUL character (an odd run of
    backslashes before ``u0000``; ``\\\\u0000`` is a backslash and text)."""
    at = doc.find(b"\\u0000")
    while at >= 0:
        start = at
        while start > 0 and doc[start - 1] == 0x5C:
            start -= 1
        if (at - start) % 2 == 0:
            return True
        at = doc.find(b"\\u0000", at + 1)
    return False


@dataclass(frozen=True)
class _Shape:
    """What a layout of JSON keys means: the columns it carries, their
    group, and whether some key is no column."""

    carried: tuple[tuple[int, str, str], ...]  # (table position, name, kind) of each column carried
    group: int
    odd: bool


class Decoder:
    """Per table; remembers the column group of each JSON key layout it saw."""

    def __init__(self, schema: TableSchema, strict: bool = False, pure: bool | None = None) -> None:
        """``pure``: use the pure-Python decoder even where the C one is built
        (default: as ``speedups.ACTIVE`` says)."""
        self.schema = schema
        self.strict = strict
        self.kinds = schema.kinds or "x" * len(schema.columns)
        self.width = typed_width(schema)
        self._position = {c: p for p, c in enumerate(schema.columns)}
        self._key = schema.key
        self._key_carried = tuple((self._position[k], k, self.kinds[self._position[k]]) for k in schema.key)
        self._nulls = [NULL] * len(schema.columns)
        self._shapes: dict[tuple[str, ...], _Shape | str] = {}
        self._groups: dict[tuple[str, ...], int] = {}
        self._by_mask: dict[bytes, int] = {}  # the C decoder's shapes
        self._columns: list[tuple[str, ...]] = []
        # The popper thread decodes while the merging thread may re-decode a
        # batch (after a schema reload): group numbers are handed out under it.
        self._lock = threading.Lock()
        if pure is None:
            speedups.say_if_missing()
        if not self.width:
            pure = True  # no typed columns: nothing for C to render
        c = None if pure or (pure is None and speedups.ACTIVE != "c") else speedups.module()
        self._c = (
            c.Decoder(
                tuple(schema.columns),
                self.kinds,
                tuple(self._position[k] for k in schema.key),
                strict,
                self._groups_of_mask,
                self._by_mask,
            )
            if c is not None
            else None
        )

    # --- groups ----------------------------------------------------------------

    def _group(self, names: tuple[str, ...]) -> int:
        with self._lock:
            group = self._groups.get(names)
            if group is None:
                group = self._groups[names] = len(self._columns)
                self._columns.append(names)
            return group

    def _groups_of_mask(self, mask: bytes) -> int:
        """The group of the columns whose bits are set in ``mask`` (bit p of
        byte p // 8 for the column at table position p)."""
        names = tuple(c for p, c in enumerate(self.schema.columns) if mask[p >> 3] >> (p & 7) & 1)
        group = self._by_mask[mask] = self._group(names)
        return group

    def _shape(self, shape: tuple[str, ...]) -> _Shape | str:
        known = self._shapes.get(shape)
        if known is not None:
            return known
        if len(self._shapes) > 4096:  # rows of ever-new shapes must not grow memory
            self._shapes.clear()
        position = self._position
        unknown = [k for k in shape if k not in position]
        if unknown and self.strict:
            result: _Shape | str = f"not columns of {self.schema.table.name}: {', '.join(sorted(unknown))}"
        else:
            positions = sorted(position[k] for k in shape if k in position)
            names = tuple(self.schema.columns[p] for p in positions)
            carried = tuple((p, self.schema.columns[p], self.kinds[p]) for p in positions)
            result = _Shape(carried, self._group(names), bool(unknown))
        self._shapes[shape] = result
        return result

    # --- records ---------------------------------------------------------------

    def decode(self, ids: list[str], values: list[bytes | None], recreated: dict[str, str] | None = None) -> Decoded:
        """``recreated``: id -> generation of records that are new rows after
        a delete; those that decode are merged as replacements. Never raises
        for a record: one that cannot be decoded is a dead letter."""
        out = Decoded(self._columns, schema=self.schema)
        recreated = recreated or {}
        if self._c is not None:
            try:
                flags = self._c.decode(
                    ids,
                    values,
                    recreated,
                    out.items,
                    out.replace,
                    lambda rid, raw: self.decode_one(out, rid, raw, recreated),
                )
            except Exception as exc:  # a fault of the C path (memory, a bug): decode the batch again here
                log.warning("the C decoder failed (%s: %s); decoding the batch in Python", type(exc).__name__, exc)
                out = Decoded(self._columns, schema=self.schema)
            else:
                out.unknown = out.unknown or bool(flags & 1)
                out.jsonb = out.jsonb or bool(flags & 2)
                return out
        for rid, raw in zip(ids, values):
            self.decode_one(out, rid, raw, recreated)
        return out

    def decode_one(self, out: Decoded, rid: str, raw: bytes | None, recreated: dict[str, str]) -> None:
        """Decode one record into ``out``: an item, or a dead letter. Whatever
        goes wrong with one record stays with it: an exception is its dead
        letter, never the batch's."""
        try:
            self._decode_one(out, rid, raw, recreated)
        except Exception as exc:
            out.replace.pop(rid, None)
            out.dead.append((rid, f"cannot be decoded: {type(exc).__name__}: {str(exc).strip()}"))

    def _decode_one(self, out: Decoded, rid: str, raw: bytes | None, recreated: dict[str, str]) -> None:
        dead = out.dead
        got = read(self._key, rid, raw)  # the rules every sink shares
        if isinstance(got, str):
            dead.append((rid, got))
            return
        deleting, row = got
        assert raw is not None  # read() said so
        doc = raw[1:] if deleting else raw
        if b"\\u0000" in doc and has_nul_escape(doc):
            dead.append((rid, "a JSON string holds \\u0000, which PostgreSQL cannot store in text or jsonb"))
            return
        i = len(out.items)
        if deleting:
            carried = self._key_carried  # a tombstone carries its key only
            group = DELETE
        else:
            shape = self._shape(tuple(row))
            if type(shape) is str:  # --strict: a key that is no column (yet: the caller may reload)
                out.unknown = True
                dead.append((rid, shape))
                return
            assert isinstance(shape, _Shape)
            if shape.odd:
                out.unknown = True
            carried, group = shape.carried, shape.group
        again = deleting or rid in recreated
        try:
            line = None if holds_huge_number(doc) else self._typed_line(i, group, again, row, carried)
        except Exception:  # a value rendering cannot take: PostgreSQL judges it on the jsonb path
            line = None
        if line is None:
            line = jsonb_line(i, group, again, doc, self.width)
            out.jsonb = True
        if not deleting and rid in recreated:
            out.replace[rid] = recreated[rid]
        out.items.append((group, rid, doc, line))

    def _typed_line(
        self, i: int, group: int, delete: bool, row: dict[str, Any], carried: tuple[tuple[int, str, str], ...]
    ) -> bytes | None:
        if not self.width:
            return None
        fields = self._nulls[:]
        for p, name, kind in carried:
            value = row[name]
            if type(value) is int and kind in SCALARS:  # the common cases, as render() has them
                fields[p] = str(value)
                continue
            text = copy_text(value) if type(value) is str and kind in SCALARS else render(kind, value)
            if text is None:
                return None
            fields[p] = text
        return f"{i}\t{group}\t{'t' if delete else 'f'}\t\\N\t{chr(9).join(fields)}\n".encode()
