"""Each batch reaches PostgreSQL in key order (merge.key_order; for an
integer key in C, ``int_order``), and the common batch is merged by the
cheapest statement that means the same: the C sort agrees with its Python
twin, the target gets its rows in key order, a row COPY refuses is still
pinned on its own record, and a batch with a record on the jsonb path never
takes the typed-only statement."""

from __future__ import annotations

import random
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncwd_fast import speedups
from syncwd_fast.sinks.postgres.decode import Decoder
from syncwd_fast.sinks.postgres.merge import key_order

from .helpers import merge_via
from .test_speedups import schema as speedups_schema

needs_c = pytest.mark.skipif(not speedups.available(), reason="the C speedup is not built")

# Ids int() reads but int_order leaves to Python, and ids no int
ODD_IDS = ["007", "-0", "+5", " 5", "5 ", "1_000", "\u0663", "", "-", "--1", "x", "1e3", "9" * 30, "-" + "9" * 30]
EDGES = [str(2**63 - 1), str(-(2**63)), str(2**63), str(-(2**63) - 1), str(2**64), "0", "-1"]


def items_of(ids: list[str]) -> list[tuple[int, str, bytes, bytes]]:
    return [(0, rid, b"{}", b"") for rid in ids]


@needs_c
@settings(max_examples=400, deadline=None)
@given(
    ids=st.lists(
        st.one_of(
            st.integers(min_value=-(2**64), max_value=2**64).map(str),
            st.integers(min_value=-50, max_value=50).map(str),
            st.sampled_from(ODD_IDS + EDGES),
        ),
        max_size=60,
    ),
    data=st.data(),
)
def test_int_order_sorts_as_its_python_twin(ids: list[str], data: Any) -> None:
    items = items_of(ids)
    staged = data.draw(st.permutations(range(len(ids))).map(lambda p: p[: data.draw(st.integers(0, len(p)))]))
    staged = list(staged)
    assert key_order(items, staged, True, pure=False) == key_order(items, staged, True, pure=True)


@needs_c
def test_int_order_keeps_ties_in_their_staged_order_and_edges_exact() -> None:
    ids = ["5", "-3", "5", "05", str(-(2**63)), str(2**63 - 1), "-3"]
    items = items_of(ids)
    staged = [6, 5, 4, 3, 2, 1, 0]
    got = speedups.module().int_order(items, staged)
    assert got == [4, 6, 1, 3, 2, 0, 5]
    assert got == key_order(items, staged, True, pure=True)


@needs_c
def test_int_order_hands_what_it_cannot_read_to_python_and_refuses_bad_arguments() -> None:
    module = speedups.module()
    assert module.int_order(items_of(["1", "+2"]), [0, 1]) is None
    assert module.int_order(items_of(["1", str(2**63)]), [0, 1]) is None
    assert module.int_order([(0,)], [0]) is None  # not an item: Python's twin raises on it
    assert module.int_order(items_of([]), []) == []
    for staged in ([2], [-1], [2**70]):
        with pytest.raises((IndexError, OverflowError)):
            module.int_order(items_of(["1", "2"]), staged)
    with pytest.raises(TypeError):
        module.int_order(tuple(items_of(["1"])), [0])


def test_without_an_integer_key_ids_sort_as_text_and_unreadable_ints_keep_their_order() -> None:
    items = items_of(["b", "a", "10", "9"])
    assert key_order(items, [0, 1, 2, 3], False) == [2, 3, 1, 0]
    items = items_of(["3", "x", "1"])
    assert key_order(items, [0, 1, 2], True, pure=True) == [0, 1, 2]


@pytest.mark.parametrize("key_type", ["bigint", "int", "text"])
def test_the_target_gets_a_shuffled_batch_in_key_order(impl: str, key_type: str, db, dsn, schema) -> None:
    table = f"{schema}.ordered"
    db.execute(f"CREATE TABLE {table} (id {key_type} PRIMARY KEY, v int)")
    keys = list(range(-200, 300))
    random.Random(3).shuffle(keys)
    batch = [(str(k), orjson.dumps({"id": k if key_type != "text" else str(k), "v": k})) for k in keys]
    assert merge_via(impl, dsn, table, [batch]) == set()
    # A fresh table's heap holds its rows in the order they were inserted.
    stored = [row[0] for row in db.execute(f"SELECT id FROM {table} ORDER BY ctid").fetchall()]
    expected = sorted(keys) if key_type != "text" else sorted(str(k) for k in keys)
    assert stored == expected


def test_a_row_copy_refuses_is_pinned_on_its_own_record(impl: str, db, dsn, schema) -> None:
    """numeric refuses more than 16383 digits after the point, and so does
    jsonb: the typed COPY fails, then the jsonb one names its line, which is
    the line of the batch in key order, not in the order it was popped."""
    table = f"{schema}.pinned"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, n numeric)")
    big = b"0.5" + b"0" * 16400 + b"1"
    batch = [
        ("30", b'{"id": 30, "n": ' + big + b"}"),
        ("10", b'{"id": 10, "n": 1}'),
        ("20", b'{"id": 20, "n": 2}'),
        ("5", b'{"id": 5, "n": 3}'),
    ]
    assert merge_via(impl, dsn, table, [batch]) == {"30"}
    assert db.execute(f"SELECT id, n FROM {table} ORDER BY id").fetchall() == [(5, 3), (10, 1), (20, 2)]


class Executed:
    """The statements the merge runs, as text."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts: list[str] = []
        original = psycopg.Cursor.execute

        def execute(cur: psycopg.Cursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
            self.texts.append(query if isinstance(query, str) else query.as_string(cur))
            return original(cur, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", execute)

    def upserts(self) -> list[str]:
        return [t for t in self.texts if t.startswith("INSERT INTO")]


def test_the_common_batch_is_one_insert_over_the_stage_and_a_jsonb_record_keeps_the_full_one(
    impl: str, db, dsn, schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = f"{schema}.shapes"
    db.execute(f"CREATE TYPE {schema}.pair AS (a int, b text)")
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int, j jsonb, p {schema}.pair)")
    executed = Executed(monkeypatch)
    common = [(str(k), orjson.dumps({"id": k, "v": k})) for k in range(50)]
    assert merge_via(impl, dsn, table, [common]) == set()
    (upsert,) = executed.upserts()
    assert "jsonb_to_record" not in upsert and "s.g =" not in upsert

    # Two groups, one of them with records only the jsonb path reads (a
    # composite column: no typed rendering): the full statement, which reads
    # them, and its group's filter on the other.
    executed.texts.clear()
    mixed = [("7", b'{"id": 7, "p": {"a": 1, "b": "x"}}'), ("8", b'{"id": 8, "p": null}'), ("9", b'{"id": 9, "v": 9}')]
    assert merge_via(impl, dsn, table, [mixed]) == set()
    upserts = executed.upserts()
    assert len(upserts) == 2 and all("jsonb_to_record" in u and "s.g =" in u for u in upserts)
    rows = db.execute(f"SELECT id, v, p::text FROM {table} WHERE id IN (7, 8, 9) ORDER BY id").fetchall()
    assert rows == [(7, 7, "(1,x)"), (8, 8, None), (9, 9, None)]

    # Two groups, every record typed: each group's typed statement, filtered.
    executed.texts.clear()
    typed = [("1", b'{"id": 1, "j": {"a": 1}}'), ("2", b'{"id": 2, "v": 20}')]
    assert merge_via(impl, dsn, table, [typed]) == set()
    upserts = executed.upserts()
    assert len(upserts) == 2 and all("jsonb_to_record" not in u and "s.g =" in u for u in upserts)
    assert db.execute(f"SELECT id, v, j::text FROM {table} WHERE id IN (1, 2) ORDER BY id").fetchall() == [
        (1, 1, '{"a": 1}'),
        (2, 20, None),
    ]


def test_decoded_says_whether_a_record_is_on_the_jsonb_path(impl: str) -> None:
    decoder = Decoder(speedups_schema(), pure=impl == "python")
    typed = decoder.decode(["1", "2"], [b'{"id": "1", "score": "3"}', b'{"id": "2"}'])
    assert not typed.jsonb
    mixed = decoder.decode(["1", "3"], [b'{"id": "1"}', b'{"id": "3", "other": 1}'])  # a composite column
    assert mixed.jsonb
    assert typed.as_jsonb().jsonb and mixed.as_jsonb().jsonb
