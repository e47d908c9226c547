"""Review of 0e41c3b (typed stage + C decoder): each test names a defect and
fails on that commit. Real PostgreSQL and Redis (conftest fixtures)."""

from __future__ import annotations

import random
import threading
from typing import Any

import orjson
import psycopg
import pytest

from syncwd_fast import FastDrainer, Syncwd, Table, speedups
from syncwd_fast.connection import connect
from syncwd_fast.sinks.postgres.decode import Decoder
from syncwd_fast.sinks.postgres.merge import Merger
from syncwd_fast.sinks.postgres.schema import load_schema

from .helpers import merge_via

needs_c = pytest.mark.skipif(not speedups.available(), reason="the C speedup is not built")


def c_and_python(db: psycopg.Connection[Any], dsn: str, schema: str, columns: str, batches) -> dict[str, Any]:
    """(dead ids, rows as text) of the same batches merged by each implementation."""
    out = {}
    for impl in ("c", "python"):
        table = f"{schema}.via_{impl}"
        db.execute(f"CREATE TABLE {table} ({columns})")
        dead = merge_via(impl, dsn, table, batches)
        out[impl] = (sorted(dead), db.execute(f"SELECT x::text FROM {table} x ORDER BY 1").fetchall())
    return out


# --- 1. the typed path never checks that the document is one jsonb can hold ---


@needs_c
def test_typed_record_skips_jsonb_validation_of_its_document(db, dsn, schema):
    """A number with more than 16383 fraction digits is valid JSON to orjson and
    to the C scanner, but jsonb (numeric) refuses it. The C decoder renders it
    typed into a text column and the row lands; the pure decoder sends it the
    jsonb path, where COPY refuses the document and it is dead-lettered (as the
    old all-jsonb path and jsonb_populate_record would). And in the same batch
    a float8 record the pure decoder typed is dead-lettered too, because the
    failed typed COPY sent the whole batch the jsonb path."""
    big = b"0.5" + b"0" * 16400 + b"1"
    batch = [("1", b'{"id": 1, "t": ' + big + b"}"), ("2", b'{"id": 2, "f": ' + big + b"}")]
    with pytest.raises(psycopg.DataError):  # what the reference (jsonb_populate_record) sees
        db.execute("SELECT %s::jsonb", (batch[0][1].decode(),))
    out = c_and_python(db, dsn, schema, "id int PRIMARY KEY, t text, f float8", [batch])
    assert out["c"] == out["python"]


# --- 2. which statement merges a record depends on the implementation ---


U1 = "6F9619FF-8B86-D011-B42D-00C04FC964FF"
U2 = U1.lower()


@needs_c
def test_two_spellings_of_one_key_refused_by_c_written_by_python(db, dsn, schema):
    """Two ids naming one uuid row, of the same shape: C types both (the float
    1.5 has its own text) so they meet in one INSERT and are both refused
    (merge._refuse_duplicates); the pure decoder sends the float one the jsonb
    path, the other typed, so they are two statements and both are written,
    the later group winning."""
    batch = [(U1, f'{{"id": "{U1}", "n": 1.5}}'.encode()), (U2, f'{{"id": "{U2}", "n": 2}}'.encode())]
    out = c_and_python(db, dsn, schema, "id uuid PRIMARY KEY, n numeric", [batch])
    assert out["c"] == out["python"]


@needs_c
def test_statement_order_depends_on_implementation_and_c_dead_letters_a_valid_record(db, dsn, schema):
    """Same shape, same batch: C sends the records with floats orjson writes
    with an exponent (1e-07) the jsonb path, the pure decoder types them all.
    Groups run in order of first appearance, so under C record 3 is merged
    before record 2 frees the unique email 'b', and is dead-lettered; under the
    pure decoder (one statement, batch order) every record lands."""
    first = [("1", b'{"id": 1, "email": "a", "f": 1.5}'), ("2", b'{"id": 2, "email": "b", "f": 1.5}')]
    batch = [
        ("4", orjson.dumps({"id": 4, "email": "z", "f": 1e-07})),
        ("2", orjson.dumps({"id": 2, "email": "c", "f": 2.5})),
        ("3", orjson.dumps({"id": 3, "email": "b", "f": 1e-07})),
    ]
    out = c_and_python(db, dsn, schema, "id int PRIMARY KEY, email text UNIQUE, f float8", [first, batch])
    assert out["c"] == out["python"]


# --- 3. group numbers overflow the stage's smallint ---


@pytest.mark.parametrize("impl", ["c", "python"])
def test_group_numbers_overflow_smallint_and_valid_records_are_dead_lettered(impl, db, dsn, schema):
    """Every column layout takes two groups (typed and jsonb) for the life of a
    Decoder (one per partition per drain), but the stage's g is a smallint: after
    16384 layouts, COPY refuses every line, and each record of a later layout is
    dead-lettered ("smallint out of range"), one COPY per record. One drain of a
    table of 15 optional columns written partially is enough (FastDrainer does
    it: 115 of 16499 records dead-lettered, 77 s)."""
    if impl == "c" and not speedups.available():
        pytest.skip("the C speedup is not built")
    cols = [f"c{k}" for k in range(15)]
    table = f"{schema}.wide"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, {', '.join(c + ' int' for c in cols)})")
    conn = connect(dsn)
    try:
        tschema = load_schema(conn, Table(table, key="id"))
        decoder = Decoder(tschema, pure=impl == "python")
        merger = Merger(conn, tschema, (0, 0), lambda: True)

        def record(n: int, mask: int) -> tuple[str, bytes]:
            return str(n), orjson.dumps({"id": n, **{cols[k]: k for k in range(15) if mask >> k & 1}})

        earlier = [record(n, n + 1) for n in range(16384)]  # 16384 layouts seen (and merged) earlier in the drain
        decoder.decode([rid for rid, _ in earlier], [doc for _, doc in earlier])
        later = [record(20000 + n, 16385 + n) for n in range(5)]
        decoded = decoder.decode([rid for rid, _ in later], [doc for _, doc in later])
        result = merger.merge(decoded)
    finally:
        conn.close()
    assert decoded.dead == [] and result.dead == []
    assert sorted(result.upserted) == sorted(rid for rid, _ in later)


# --- 4. the stage has four more columns than the target ---


@pytest.mark.parametrize("impl", ["c", "python"])
def test_table_of_1597_columns_cannot_be_drained(impl, db, dsn, schema):
    """PostgreSQL allows 1600 columns; the stage adds i, g, del, doc to one per
    target column, so a target of 1597..1600 columns has no stage
    (merge.stage_ddl / Merger.set_schema: TooManyColumns) and no record of it
    can be merged. The old stage (i, g, del, doc) had no such limit."""
    if impl == "c" and not speedups.available():
        pytest.skip("the C speedup is not built")
    columns = "id int PRIMARY KEY, " + ", ".join(f"x{k} int" for k in range(1596))
    db.execute(f"CREATE TABLE {schema}.wide ({columns})")
    assert merge_via(impl, dsn, f"{schema}.wide", [[("1", b'{"id": 1, "x5": 5}')]]) == set()
    assert db.execute(f"SELECT id, x5 FROM {schema}.wide").fetchall() == [(1, 5)]


@pytest.mark.parametrize("pure", ["", "1"])
def test_record_whose_typed_stage_row_is_too_big_aborts_every_drain(pure, r, db, dsn, prefix, schema, monkeypatch):
    """The target holds the row (8064 bytes), the typed stage row is 8208
    bytes (the stage adds i, g, del and a null bitmap): COPY fails when it
    flushes its buffered rows at the end, where the context names line N+1.
    merge._transaction only takes lines 1..N as a record's, so the error is
    raised instead of sending the batch the jsonb path: the drain aborts
    (exit 3) every time and the record never lands. jsonb_populate_record
    (and the old stage) write it."""
    monkeypatch.setattr(speedups, "ACTIVE", "python" if pure else speedups.ACTIVE)
    n = 1005
    db.execute(
        f"CREATE TABLE {schema}.wide (id bigint PRIMARY KEY, " + ", ".join(f"x{k} bigint" for k in range(n)) + ")"
    )
    table = Table(f"{schema}.wide", key="id")
    record = {"id": 1, **{f"x{k}": k for k in range(n)}}
    db.execute(f"SELECT * FROM jsonb_populate_record(NULL::{schema}.wide, %s::jsonb)", (orjson.dumps(record).decode(),))
    Syncwd(r, prefix=prefix).update(table, record)
    report = FastDrainer(r, dsn, prefix=prefix, retries=1, retry_backoff=0.1).drain()
    assert (report.exit_code, report.upserted, report.aborted) == (0, 1, None)
    assert db.execute(f"SELECT x1004 FROM {schema}.wide WHERE id = 1").fetchone() == (1004,)


# --- 5. the C Decoder keeps per-record scratch in the object: not thread-safe ---


def _layout_batch(lo: int, hi: int, cols: list[str]) -> tuple[list[str], list[bytes]]:
    ids, values = [], []
    for n in range(lo, hi):
        ids.append(str(n))
        values.append(orjson.dumps({"id": n, **{c: n for k, c in enumerate(cols) if n >> k & 1}}))
    return ids, values


@needs_c
def test_c_decoder_used_by_two_threads_renders_one_records_line_with_anothers_values():
    """decode.c keeps the record being decoded (values, mask, last_mask, line,
    text) in the Decoder object and calls back into Python (groups_of_mask, the
    slow path) in the middle of a record, where the GIL may pass to another
    thread. partition.py decodes with one Decoder from two threads: the popper
    (_fetch) and, after a schema reload, the merging thread (_merge re-decodes).
    Here: two threads, one C Decoder, default switch interval."""
    from psycopg import sql

    from syncwd_fast.sinks.postgres.schema import TableSchema

    cols = [f"c{k}" for k in range(16)]
    names = ("id", *cols)
    tschema = TableSchema(
        Table("s.t", key="id"),
        sql.Identifier("s", "t"),
        names,
        types=tuple((c, "bigint") for c in names),
        kinds="s" * len(names),
    )
    wrong = []
    for trial in range(4):
        decoder = Decoder(tschema, pure=False)
        base = trial * 100000
        batches = [_layout_batch(base, base + 40000, cols), _layout_batch(base + 40000, base + 80000, cols)]
        out: list[Any] = [None, None]

        def work(k: int, decoder: Decoder = decoder, batches: list[Any] = batches, out: list[Any] = out) -> None:
            out[k] = decoder.decode(*batches[k])

        threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for decoded in out:
            for _, rid, doc, line in decoded.items:
                row = orjson.loads(doc)
                fields = line.decode().rstrip("\n").split("\t")[4:]
                if fields != [str(row[c]) if c in row else "\\N" for c in names]:
                    wrong.append((rid, line[:60]))
    assert wrong == []


@needs_c
def test_c_drain_across_a_schema_reload_loses_and_garbles_rows(r, db, dsn, prefix, schema):
    """The same race through FastDrainer: a column is added after the first
    batch (the records carry it), so the second batch is re-decoded by the
    merging thread while the popper decodes the third with the same new C
    Decoder. Some records are acked as upserted but their rows are missing or
    carry another layout's columns. A race, so tried up to 4 times (about one
    drain in two showed it here, 2..7 rows each; SYNCWD_FAST_PURE=1 never)."""
    nc = 16
    cols = [f"c{k}" for k in range(nc)]
    for attempt in range(4):
        name = f"{schema}.w{attempt}"
        db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, {', '.join(c + ' int' for c in cols)})")
        table = Table(name, key="id")
        rng = random.Random(7)
        expected, records = {}, []
        for n in range(12000):
            mask = rng.getrandbits(nc)
            records.append({"id": n, **{cols[k]: n for k in range(nc) if mask >> k & 1}, "extra": n})
            expected[n] = tuple(n if mask >> k & 1 else None for k in range(nc))
        Syncwd(r, prefix=prefix).update_many(table, records)
        added: list[int] = []

        def on_batch(_: str, number: int, n: int, name: str = name, added: list[int] = added) -> None:
            if not added:
                added.append(1)
                db.execute(f"ALTER TABLE {name} ADD COLUMN extra int")

        report = FastDrainer(r, dsn, prefix=prefix, batch=4000, on_batch=on_batch).drain()
        assert report.exit_code == 0 and report.upserted == 12000
        got = {row[0]: tuple(row[1 : nc + 1]) for row in db.execute(f"SELECT * FROM {name}").fetchall()}
        wrong = {n: (expected[n], got.get(n)) for n in expected if got.get(n) != expected[n]}
        if wrong:
            break
    assert wrong == {}
