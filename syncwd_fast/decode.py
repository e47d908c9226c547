"""Decode and validate a popped batch before any SQL: each value must be a
JSON object (or a tombstone) whose key columns render to its id."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from .keys import TOMBSTONE, canonical_id
from .schema import TableSchema

DELETE = -1  # the group of tombstones


@dataclass
class Decoded:
    """A batch ready to merge: ``items`` are (group, id, JSON document) where
    group indexes ``columns`` (the columns the record carries) or is DELETE."""

    columns: list[tuple[str, ...]] = field(default_factory=list)
    items: list[tuple[int, str, bytes]] = field(default_factory=list)
    dead: list[tuple[str, str]] = field(default_factory=list)
    # id -> generation: records that are a new row after a delete (write.lua)
    replace: dict[str, str] = field(default_factory=dict)
    # some record carries JSON keys that are not columns (yet: the schema may
    # have changed since it was read)
    unknown: bool = False
    schema: TableSchema | None = None  # the schema it was decoded against


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


class Decoder:
    """Per table; remembers the column group of each JSON key layout it saw."""

    def __init__(self, schema: TableSchema, strict: bool = False) -> None:
        self.schema = schema
        self.strict = strict
        self._known = frozenset(schema.columns)
        self._shapes: dict[tuple[str, ...], int | str] = {}
        self._groups: dict[tuple[str, ...], int] = {}
        self._columns: list[tuple[str, ...]] = []
        self._odd: set[tuple[str, ...]] = set()  # shapes with keys that are not columns

    def _group(self, shape: tuple[str, ...]) -> int | str:
        columns = tuple(c for c in self.schema.columns if c in shape)
        unknown = [k for k in shape if k not in self._known]
        if unknown:
            self._odd.add(shape)
        if unknown and self.strict:
            return f"not columns of {self.schema.table.name}: {', '.join(sorted(unknown))}"
        group = self._groups.get(columns)
        if group is None:
            group = self._groups[columns] = len(self._columns)
            self._columns.append(columns)
        return group

    def decode(self, ids: list[str], values: list[bytes | None], recreated: dict[str, str] | None = None) -> Decoded:
        """``recreated``: id -> generation of records that are new rows after
        a delete; those that decode are merged as replacements."""
        key = self.schema.key
        single = key[0] if len(key) == 1 else None
        out = Decoded(columns=self._columns, schema=self.schema)
        items, dead = out.items, out.dead
        loads, shapes, odd = orjson.loads, self._shapes, self._odd
        for rid, raw in zip(ids, values):
            if raw is None:
                dead.append((rid, "value missing: the id was dirty but its value key is gone"))
                continue
            deleting = raw[:1] == TOMBSTONE
            doc = raw[1:] if deleting else raw
            try:
                row = loads(doc)
            except orjson.JSONDecodeError as exc:
                dead.append((rid, f"invalid JSON: {exc}"))
                continue
            if type(row) is not dict:
                dead.append((rid, f"not a JSON object: got {type(row).__name__}"))
                continue
            if b"\\u0000" in doc and has_nul_escape(doc):
                dead.append((rid, "a JSON string holds \\u0000, which PostgreSQL cannot store in text or jsonb"))
                continue
            if single is not None:
                value = row.get(single)
                if value is None:
                    dead.append((rid, f"missing key column {single!r}"))
                    continue
                cid = canonical_id((value,))  # the writer's own rendering, so the two cannot drift
            else:
                values_ = [row.get(k) for k in key]
                if None in values_:
                    dead.append((rid, f"missing key column {key[values_.index(None)]!r}"))
                    continue
                cid = canonical_id(values_)
            if cid != rid:
                dead.append((rid, f"key mismatch: the row's key is {cid!r}, its id is {rid!r}"))
                continue
            if deleting:
                items.append((DELETE, rid, doc))
                continue
            shape = tuple(row)
            group = shapes.get(shape)
            if group is None:
                if len(shapes) > 4096:  # rows of ever-new shapes must not grow memory
                    shapes.clear()
                    odd.clear()
                group = shapes[shape] = self._group(shape)
            if odd and shape in odd:
                out.unknown = True
            if type(group) is str:
                dead.append((rid, group))
                continue
            items.append((group, rid, doc))  # type: ignore[arg-type]
            if recreated and rid in recreated:
                out.replace[rid] = recreated[rid]
        return out
