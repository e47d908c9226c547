"""Review 19d (fixed since): records failing alone a table's reference to itself are kept
and settled together (merge.py ``_Run._defer``, ``_settle``, ``_together``,
``Merger.unresolved``). When the statement over the kept records still fails
for something ``Merger.unresolved`` cannot see (a MATCH FULL key mixing NULLs,
a record whose own change breaks a reference to it, a group that does not
carry every self-referencing column, a chain longer than UNRESOLVED_ROUNDS),
``_together`` halves them with deferring off: halving splits chains again and
dead-letters records PostgreSQL accepts, the very defect settling was meant
to end.

Correct behaviour: only the records PostgreSQL refuses are dead-lettered;
every record of a chain that ends at an existing row lands; and a batch
costs a few statements, not a few per record."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import Statements, merge_records, rows


def _dead(result: Any) -> set[int]:
    return {int(rid) for rid, _ in result.dead}


def _chain(first: int, n: int, column: str = "parent", **extra: Any) -> list[dict[str, Any]]:
    """first -> first+1 -> ... -> first+n: each record references the next id."""
    return [{"id": first + i, "v": 1, column: first + i + 1, **extra} for i in range(n)]


def test_a_match_full_key_mixing_nulls_does_not_split_a_good_chain(db, dsn, schema):
    """20 mixes a NULL into a MATCH FULL key: refused. 10 -> 11 -> 12 -> 100
    (a row) is accepted by PostgreSQL, yet 10 is dead-lettered: unresolved()
    takes a key with a NULL for met, so 20 stays among the records settled
    together, their statement fails, and halving splits the chain."""
    db.execute(
        f"CREATE TABLE {schema}.p (id int PRIMARY KEY, sub int NOT NULL, v int, pid int, psub int,"
        f" UNIQUE (id, sub), FOREIGN KEY (pid, psub) REFERENCES {schema}.p (id, sub) MATCH FULL)"
    )
    db.execute(f"INSERT INTO {schema}.p VALUES (100, 0, 0, NULL, NULL)")
    records = [
        {"id": 10, "sub": 0, "v": 1, "pid": 11, "psub": 0},
        {"id": 11, "sub": 0, "v": 1, "pid": 12, "psub": 0},
        {"id": 12, "sub": 0, "v": 1, "pid": 100, "psub": 0},
        {"id": 20, "sub": 0, "v": 1, "pid": 999, "psub": None},
        {"id": 21, "sub": 0, "v": 1, "pid": 998, "psub": 0},
    ]
    result = merge_records(dsn, f"{schema}.p", records)
    assert _dead(result) == {20, 21}, result.dead


def test_a_record_breaking_a_reference_to_itself_does_not_split_a_good_chain(db, dsn, schema):
    """The key references a UNIQUE column (code). Record 5 changes its code
    from 50 to 51 while referencing 50: refused ("still referenced", a
    23503 of the referenced side, which unresolved() does not see). The
    chain 10 -> 11 -> 12 -> code 1000 (a row) is accepted, yet 10 is
    dead-lettered."""
    db.execute(
        f"CREATE TABLE {schema}.p (id int PRIMARY KEY, code int UNIQUE, v int, pcode int REFERENCES {schema}.p (code))"
    )
    db.execute(f"INSERT INTO {schema}.p VALUES (100, 1000, 0, NULL), (5, 50, 0, NULL)")
    records = [
        {"id": 10, "code": 110, "v": 1, "pcode": 111},
        {"id": 11, "code": 111, "v": 1, "pcode": 112},
        {"id": 12, "code": 112, "v": 1, "pcode": 1000},
        {"id": 5, "code": 51, "v": 1, "pcode": 50},
        {"id": 21, "code": 121, "v": 1, "pcode": 998},
    ]
    result = merge_records(dsn, f"{schema}.p", records)
    assert _dead(result) == {5, 21}, result.dead


def test_a_group_not_carrying_every_self_reference_settles_chains(db, dsn, schema):
    """Two references to the table itself; the records carry only one of
    them, so Merger.unresolved() is None and nothing is set aside: the
    kept records (10, 11, 12 of the chain 10 -> 11 -> 12 -> 13 -> 100, and
    the refused 20, 21) are halved together and 10, 11 are dead-lettered
    although PostgreSQL accepts them."""
    db.execute(
        f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int,"
        f" parent int REFERENCES {schema}.p (id), other int REFERENCES {schema}.p (id))"
    )
    db.execute(f"INSERT INTO {schema}.p VALUES (100, 0, NULL, NULL)")
    records = _chain(10, 4)[:3] + [
        {"id": 13, "v": 1, "parent": 100},
        {"id": 20, "v": 1, "parent": 999},
        {"id": 21, "v": 1, "parent": 998},
    ]
    result = merge_records(dsn, f"{schema}.p", records)
    assert _dead(result) == {20, 21}, result.dead
    assert [r[0] for r in rows(db, f"{schema}.p")] == [10, 11, 12, 13, 100]


def test_a_chain_longer_than_the_rounds_does_not_split_a_good_chain(db, dsn, schema):
    """1 -> 2 -> ... -> 41 (missing): refused whole. 200 -> 201 -> 202 ->
    203 -> 204 (a row) is accepted, yet 200 and 201 are dead-lettered: after
    UNRESOLVED_ROUNDS rounds records 1..8 are still among those settled
    together, and halving splits the good chain."""
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int, parent int REFERENCES {schema}.p (id))")
    db.execute(f"INSERT INTO {schema}.p VALUES (204, 0, NULL)")
    result = merge_records(dsn, f"{schema}.p", _chain(200, 4) + _chain(1, 40))
    assert _dead(result) == set(range(1, 41)), sorted(_dead(result))


def test_a_long_chain_ending_at_a_missing_row_costs_a_few_statements(db, dsn, schema, monkeypatch):
    """A chain of 1000 records ending at a missing row: every record is
    refused (right), but past UNRESOLVED_ROUNDS the rest is halved with one
    by one off: ~2 statements per record (1999 here) where a batch of 1000
    records each referencing a missing row costs ~35."""
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int, parent int REFERENCES {schema}.p (id))")
    statements = Statements(monkeypatch)
    result = merge_records(dsn, f"{schema}.p", _chain(0, 1000))
    assert _dead(result) == set(range(1000))
    assert statements.count <= 100, statements.count


@pytest.mark.parametrize("first", ["referencing", "referenced"])
def test_a_reference_to_a_record_of_another_column_group_lands(db, dsn, schema, first):
    """10 carries v, 11 does not: two column groups, merged one after the
    other. 10 -> 11 -> 100 (a row) is accepted by PostgreSQL, but when 10's
    group is merged first, 10 is settled with its own group only (_settle
    runs per unit, before 11's group is merged) and dead-lettered."""
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int, parent int REFERENCES {schema}.p (id))")
    db.execute(f"INSERT INTO {schema}.p VALUES (100, 0, NULL)")
    records = [{"id": 10, "v": 1, "parent": 11}, {"id": 11, "parent": 100}]
    if first == "referenced":
        records.reverse()
    result = merge_records(dsn, f"{schema}.p", records)
    assert not result.dead, result.dead
