"""The common batch (one column group, nothing deleted, every record typed)
is merged the limit's own way: its typed columns alone COPYed into a stage
of those, then one statement (Merger._typed_only). It must land exactly
what the full stage lands; a batch it does not fit goes the full way; and a
batch PostgreSQL refuses there for its data is rolled back and merged the
full way, where each bad record is found and dead-lettered."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
import pytest

from syncwd_fast import speedups
from syncwd_fast.errors import LeaseLost
from syncwd_fast.sinks.postgres.merge import copy_payload

from .helpers import merger_for


class Copies:
    """The COPY statements the merge sends, as text, and the statements."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.copies: list[str] = []
        self.executed: list[str] = []
        copy, execute = psycopg.Cursor.copy, psycopg.Cursor.execute

        def copying(cur: psycopg.Cursor[Any], statement: Any, *args: Any, **kwargs: Any) -> Any:
            self.copies.append(statement if isinstance(statement, str) else statement.as_string(cur))
            return copy(cur, statement, *args, **kwargs)

        def executing(cur: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
            self.executed.append(query if isinstance(query, str) else query.as_string(cur))
            return execute(cur, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "copy", copying)
        monkeypatch.setattr(psycopg.Cursor, "execute", executing)

    def typed_only(self) -> bool:
        return any("_typed" in c for c in self.copies)

    def clear(self) -> None:
        self.copies.clear()
        self.executed.clear()


def merge(impl: str, dsn: str, table: str, batch: list[tuple[str, bytes]], still: Any = None) -> Any:
    conn, decoder, merger = merger_for(dsn, table, pure=impl == "python")
    if still is not None:
        merger.still_leased = still
    try:
        decoded = decoder.decode([rid for rid, _ in batch], [doc for _, doc in batch])
        return merger.merge(decoded)
    finally:
        conn.close()


AT = "2026-12-06T10:00:00Z"


def test_the_common_batch_lands_through_the_typed_stage_as_through_the_full_one(
    impl: str, db, dsn, schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = f"{schema}.common"
    db.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, name text, n numeric, at timestamptz, ok boolean)")
    db.execute(f"INSERT INTO {table} VALUES (3, 'old', 1, NULL, true)")
    copies = Copies(monkeypatch)
    names = ["tab\there", "back\\slash", "new\nline", "\u00e9\u4e2d", "", None]
    batch = [
        (str(k), orjson.dumps({"id": k, "name": names[k % 6], "n": k * 3, "at": AT, "ok": k % 2 == 1}))
        for k in (5, 3, 1, 4, 2, 0)
    ]
    result = merge(impl, dsn, table, batch)
    assert copies.typed_only() and len(copies.copies) == 1
    assert not result.dead and not result.skipped
    rows = db.execute(f"SELECT id, name, n, at IS NOT NULL, ok FROM {table} ORDER BY id").fetchall()
    assert rows == [(k, names[k % 6], k * 3, True, k % 2 == 1) for k in range(6)]


def test_a_group_lacking_columns_updates_only_those_it_carries(impl: str, db, dsn, schema, monkeypatch) -> None:
    table = f"{schema}.partial"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int, w int DEFAULT 9)")
    db.execute(f"INSERT INTO {table} VALUES (1, 5, 6)")
    copies = Copies(monkeypatch)
    assert not merge(impl, dsn, table, [("1", b'{"id": 1, "v": 7}'), ("2", b'{"id": 2, "v": 8}')]).dead
    assert copies.typed_only()
    assert db.execute(f"SELECT id, v, w FROM {table} ORDER BY id").fetchall() == [(1, 7, 6), (2, 8, 9)]


def test_a_table_of_key_columns_only_counts_the_rows_it_found(impl: str, db, dsn, schema, monkeypatch) -> None:
    table = f"{schema}.keys_only"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
    db.execute(f"INSERT INTO {table} VALUES (1), (2)")
    copies = Copies(monkeypatch)
    result = merge(impl, dsn, table, [(str(k), orjson.dumps({"id": k})) for k in (1, 2, 3)])
    assert copies.typed_only() and result.unchanged == 2
    assert [r[0] for r in db.execute(f"SELECT id FROM {table} ORDER BY id")] == [1, 2, 3]


@pytest.mark.parametrize(
    "ddl, batch, bad",
    [
        # a CHECK one record breaks: found set-wise on the full path
        ("(id int PRIMARY KEY, v int CHECK (v <> 13))", [("1", b'{"id":1,"v":1}'), ("2", b'{"id":2,"v":13}')], {"2"}),
        # another unique index: a row outside the batch holds the value
        (
            "(id int PRIMARY KEY, email text UNIQUE); INSERT INTO {t} VALUES (9, 'x@')",
            [("1", b'{"id":1,"email":"x@"}'), ("2", b'{"id":2,"email":"y@"}')],
            {"1"},
        ),
        # a deferred foreign key, which fires at SET CONSTRAINTS ALL IMMEDIATE
        (
            "(id int PRIMARY KEY, parent int REFERENCES {t} (id) DEFERRABLE INITIALLY DEFERRED)",
            [("1", b'{"id":1,"parent":null}'), ("2", b'{"id":2,"parent":99}'), ("3", b'{"id":3,"parent":1}')],
            {"2"},
        ),
        # NOT NULL broken by an explicit null
        ("(id int PRIMARY KEY, v int NOT NULL)", [("1", b'{"id":1,"v":1}'), ("2", b'{"id":2,"v":null}')], {"2"}),
    ],
    ids=["check", "unique", "deferred-fk", "not-null"],
)
def test_a_batch_refused_on_the_typed_stage_is_merged_the_full_way(
    impl: str, db, dsn, schema, monkeypatch: pytest.MonkeyPatch, ddl: str, batch: list[tuple[str, bytes]], bad: set[str]
) -> None:
    table = f"{schema}.refused"
    db.execute(f"CREATE TABLE {table} {ddl.format(t=table)}")
    copies = Copies(monkeypatch)
    result = merge(impl, dsn, table, batch)
    assert {rid for rid, _ in result.dead} == bad
    assert copies.typed_only() and any("_typed" not in c for c in copies.copies)  # tried, then the full stage
    landed = {str(r[0]) for r in db.execute(f"SELECT id FROM {table}")} - {"9"}
    assert landed == {str(orjson.loads(doc)["id"]) for rid, doc in batch if rid not in bad}


def test_batches_it_does_not_fit_go_the_full_way(impl: str, db, dsn, schema, monkeypatch) -> None:
    table = f"{schema}.shapes"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int, ver int)")
    db.execute(f"CREATE TABLE {schema}.versioned (id int PRIMARY KEY, v int)")
    copies = Copies(monkeypatch)
    for batch in (
        [("1", b'{"id":1,"v":1}'), ("2", b'{"id":2}')],  # two groups
        [("1", b'{"id":1,"v":1}'), ("2", b'~{"id":2}')],  # a tombstone
    ):
        copies.clear()
        assert not merge(impl, dsn, table, batch).dead
        assert not copies.typed_only() and copies.copies
    assert db.execute(f"SELECT id, v FROM {table} ORDER BY id").fetchall() == [(1, 1)]


def test_the_version_guard_keeps_its_statement(impl: str, db, dsn, schema, monkeypatch) -> None:
    from syncwd_fast.connection import connect
    from syncwd_fast.sinks.postgres.decode import Decoder
    from syncwd_fast.sinks.postgres.merge import Merger
    from syncwd_fast.sinks.postgres.schema import load_schema
    from syncwd_fast.table import Table

    table = f"{schema}.guarded"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int, ver int)")
    db.execute(f"INSERT INTO {table} VALUES (1, 10, 5)")
    copies = Copies(monkeypatch)
    conn = connect(dsn)
    try:
        s = load_schema(conn, Table(table, key="id", version_column="ver"))
        values = [b'{"id":1,"v":1,"ver":4}', b'{"id":2,"v":2,"ver":1}']
        decoded = Decoder(s, pure=impl == "python").decode(["1", "2"], values)
        result = Merger(conn, s, (0, 0), lambda: True).merge(decoded)
    finally:
        conn.close()
    assert result.skipped == ["1"] and not copies.typed_only()
    assert db.execute(f"SELECT id, v, ver FROM {table} ORDER BY id").fetchall() == [(1, 10, 5), (2, 2, 1)]


def test_a_lease_lost_before_commit_writes_nothing(impl: str, db, dsn, schema, monkeypatch) -> None:
    table = f"{schema}.fenced"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int)")
    copies = Copies(monkeypatch)
    with pytest.raises(LeaseLost):
        merge(impl, dsn, table, [("1", b'{"id":1,"v":1}')], still=lambda: False)
    assert copies.typed_only()
    assert db.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)


def test_a_line_is_cut_past_its_first_fields_in_both_implementations() -> None:
    items = [
        (0, "1", b"{}", b"0\t0\tf\t\\N\ta\tb\n"),
        (0, "2", b"{}", b"1\t0\tf\t\\N\tc\\td\n"),
        (0, "3", b"", b"x\ty\n"),
    ]
    for pure in [True, False] if speedups.available() else [True]:
        assert copy_payload(items, [1, 0], pure=pure, skip=4) == b"c\\td\na\tb\n"
        assert copy_payload(items, [2], pure=pure, skip=1) == b"y\n"
        with pytest.raises(ValueError):
            copy_payload(items, [0, 2], pure=pure, skip=4)
