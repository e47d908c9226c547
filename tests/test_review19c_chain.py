"""Review 19c, fixed since (records failing a reference to their own table
are settled together, merge.py ``_Run.settle``): one by one retried the
records that failed while a pass landed any. A chain of records
each referencing the NEXT record of the batch (a linked list, a tree staged
child-first) lands one record per pass: n passes over up to n records, so
O(n^2) record attempts and n round trips, for records a single statement
lands at once (a foreign key is checked at the end of the statement).

Correct behaviour: the cost stays linear in the batch (a few calls per batch,
as the feature promises); e.g. once a pass has run, the records that failed a
foreign key are tried together in one statement before passing again."""

from __future__ import annotations

import time
from typing import Any

import orjson

from syncwd_fast.sinks.postgres import merge as merge_mod

from .helpers import Statements, count, merger_for
from .test_one_by_one import refusing

N = 300


def _decode(decoder: Any, records: list[dict[str, Any]]) -> Any:
    return decoder.decode([str(r["id"]) for r in records], [orjson.dumps(r) for r in records])


def _chain(base: int, n: int) -> list[dict[str, Any]]:
    """base -> base+1 -> ... -> base+n-1: each record references the next one."""
    return [{"id": base + i, "v": base + i, "mate": base + i + 1 if i < n - 1 else None} for i in range(n)]


def _table(db: Any, schema: str) -> None:
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int NOT NULL, mate int REFERENCES {schema}.p (id))")
    refusing(db, schema, "p", "NEW.v < 0")


def _merge_clean_chain_after_a_bad_batch(dsn: str, schema: str, monkeypatch: Any) -> tuple[int, float, Any]:
    conn, decoder, merger = merger_for(dsn, f"{schema}.p")
    try:
        # A batch with records the trigger refuses: the group goes one by one.
        first = merger.merge(
            _decode(decoder, [{"id": 10_000 + i, "v": -1 if i % 3 == 0 else i, "mate": None} for i in range(30)])
        )
        assert len(first.dead) == 10
        statements = Statements(monkeypatch)
        started = time.monotonic()
        second = merger.merge(_decode(decoder, _chain(0, N)))
        return statements.count, time.monotonic() - started, second
    finally:
        conn.close()


def test_halving_lands_a_clean_chain_in_one_statement(dsn, db, schema, monkeypatch):
    """The baseline (passes): without one by one the clean batch is one statement."""
    monkeypatch.setattr(merge_mod._Run, "ONE_BY_ONE", False)
    _table(db, schema)
    statements, _, second = _merge_clean_chain_after_a_bad_batch(dsn, schema, monkeypatch)
    assert not second.dead and len(second.upserted) == N
    assert statements <= 10, statements


def test_a_clean_chain_in_a_piecemeal_group_is_not_quadratic(dsn, db, schema, monkeypatch):
    """Was a defect (review 19c): the group is piecemeal, so the clean chain goes one by one and
    lands one record per pass: N calls (~N^2/2 record attempts) where halving
    needed one statement."""
    _table(db, schema)
    statements, seconds, second = _merge_clean_chain_after_a_bad_batch(dsn, schema, monkeypatch)
    assert not second.dead and len(second.upserted) == N
    assert count(db, f"{schema}.p") == 20 + N
    assert statements <= 20, f"{statements} statements, {seconds:.2f}s for {N} clean records"


def test_a_chain_beside_bad_records_is_not_quadratic(dsn, db, schema, monkeypatch):
    """Was a defect (review 19c): four records a trigger refuses send the batch one by one; the
    chain then costs a pass (a call) per link: ~N statements, N^2/2 record
    attempts. (Halving alone is no baseline here: it splits the chain.)"""
    _table(db, schema)
    conn, decoder, merger = merger_for(dsn, f"{schema}.p")
    try:
        records = _chain(0, N) + [{"id": 10_000 + k, "v": -1, "mate": None} for k in range(4)]
        statements = Statements(monkeypatch)
        result = merger.merge(_decode(decoder, records))
    finally:
        conn.close()
    assert {rid for rid, _ in result.dead} == {str(10_000 + k) for k in range(4)}
    assert len(result.upserted) == N
    assert statements.count <= 40, f"{statements.count} statements for a batch of {N + 4}"
