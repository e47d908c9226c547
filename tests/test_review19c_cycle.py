"""Two records referencing each other (a cycle of a table's reference to
itself) land together in one statement: PostgreSQL accepts them. One by one
(merge.py ``_Run._one_by_one``) fails each alone, so it gathers every record
that failed a foreign key ("linked") and tries them together, halving with
one by one off if that fails. When the part also holds one record with a
truly missing reference (which no screen judges: the screen skips a table's
references to itself), the linked statement fails and the first halving of
the linked list ([A] | [B, C], in stage order) splits the cycle: A and B are
dead-lettered although PostgreSQL accepts them.

Plain halving of the same batch lands the cycle (its halves keep A and B
together), so this is a regression, not the known "halving splits cycles".

Correct behaviour: only C (the missing reference) is dead-lettered; A and B
land (e.g. take out linked records whose referenced key is neither in the
table nor among the linked records, set-wise, before trying the rest together;
or peel off the records holding the key the failed statement names)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from syncwd_fast.sinks.postgres import merge as merge_mod

from .helpers import merger_for
from .test_one_by_one import refusing

A, B, C = 16, 17, 18
REFUSED = {3, 25, 29}  # refused by the trigger


def _records() -> list[dict[str, Any]]:
    records = []
    for i in range(32):
        mate = {A: B, B: A, C: 999}.get(i)
        records.append({"id": i, "v": -1 if i in REFUSED else i, "mate": mate})
    return records


@pytest.mark.parametrize("one_by_one", [False, True], ids=["halving", "one_by_one"])
def test_a_cycle_beside_a_missing_reference_lands(dsn, db, schema, monkeypatch, one_by_one):
    """Both ways only C is dead-lettered (one by one dead-lettered A and B before the fix)."""
    monkeypatch.setattr(merge_mod._Run, "ONE_BY_ONE", one_by_one)
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL, mate int REFERENCES {schema}.p (id))")
    refusing(db, schema, "p", "NEW.v < 0")
    conn, decoder, merger = merger_for(dsn, f"{schema}.p")
    try:
        records = _records()
        result = merger.merge(decoder.decode([str(r["id"]) for r in records], [orjson.dumps(r) for r in records]))
    finally:
        conn.close()
    dead = dict(result.dead)
    assert set(dead) == {str(i) for i in REFUSED | {C}}, {k: v for k, v in dead.items() if int(k) in (A, B)}
    assert db.execute(f"SELECT id, mate FROM {schema}.p WHERE id IN ({A}, {B}) ORDER BY id").fetchall() == [
        (A, B),
        (B, A),
    ]
