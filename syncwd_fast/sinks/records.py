"""Stored values as records: the rules every sink shares.

A value is a JSON object whose key columns render to its id, or a tombstone
(``~`` and the key columns' JSON). Anything else is a dead letter with the
reason, before any sink sees it. A raw sink (PostgreSQL's, whose C decoder
reads each value once) applies the same rules itself.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..keys import TOMBSTONE, canonical_id
from .base import Batch, Record

MISSING = "value missing: the id was dirty but its value key is gone"


def read(key: tuple[str, ...], rid: str, raw: bytes | None) -> tuple[bool, dict[str, Any]] | str:
    """``(deleting, row)`` for a stored value, or the reason it is a dead letter."""
    if raw is None:
        return MISSING
    deleting = raw[:1] == TOMBSTONE
    try:
        row = orjson.loads(raw[1:] if deleting else raw)
    except orjson.JSONDecodeError as exc:
        return f"invalid JSON: {exc}"
    if type(row) is not dict:
        return f"not a JSON object: got {type(row).__name__}"
    values = [row.get(k) for k in key]
    if None in values:
        return f"missing key column {key[values.index(None)]!r}"
    cid = canonical_id(values)  # the writer's own rendering, so the two cannot drift
    if cid != rid:
        return f"key mismatch: the row's key is {cid!r}, its id is {rid!r}"
    return deleting, row


def fill(batch: Batch, ids: list[str], values: list[bytes | None]) -> list[tuple[str, str]]:
    """Put the records of ``ids``/``values`` in ``batch.upserts`` and
    ``batch.deletes``; the dead letters (id, reason). An exception while
    reading one record is that record's dead letter."""
    key = batch.key
    dead: list[tuple[str, str]] = []
    for rid, raw in zip(ids, values):
        try:
            got = read(key, rid, raw)
        except Exception as exc:
            got = f"cannot be decoded: {type(exc).__name__}: {str(exc).strip()}"
        if isinstance(got, str):
            dead.append((rid, got))
            continue
        deleting, row = got
        if deleting:
            batch.deletes.append(Record(rid, {k: row[k] for k in key}))
        else:
            batch.upserts.append(Record(rid, row))
    if batch.recreated:
        upserted = {r.id for r in batch.upserts}
        batch.recreated = {i: m for i, m in batch.recreated.items() if i in upserted}
    return dead
