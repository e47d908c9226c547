"""The C decoder, the pure-Python decoder and PostgreSQL's own
``jsonb_populate_record`` over the same records: identical rows, identical
dead-letter ids.

The oracle shares no code with the drain: a record is dead when orjson
refuses it, it is no object, it escapes a NUL or its key does not render to
its id (the documented decode rules), or when ``jsonb_populate_record``
(over the row as it stands, so a missing key keeps its column) and the
upsert of its result fail; otherwise its row is what they make.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncwd_fast import speedups
from syncwd_fast.keys import canonical_id

from .helpers import merge_via

IMPLS = ["python", "c"]

COLUMNS = (
    "id bigint PRIMARY KEY, t text, vc varchar(12), n numeric, i int, b boolean, f float8, r real, j jsonb,"
    " js json, ta text[], ia int[], ts timestamptz, u uuid, d date, nn numeric(6,2)"
)
NAMES = [c.split()[0] for c in COLUMNS.split(", ")]


def impl_param(impl: str) -> Any:
    marks = [] if impl == "python" or speedups.available() else [pytest.mark.skip(reason="the C speedup is not built")]
    return pytest.param(impl, marks=marks, id=impl)


IMPL_PARAMS = [impl_param(i) for i in IMPLS]


@pytest.fixture
def tables(db: psycopg.Connection[Any], schema: str) -> dict[str, str]:
    names = {"ref": f"{schema}.ref", "python": f"{schema}.via_python", "c": f"{schema}.via_c"}
    for name in names.values():
        db.execute(f"CREATE TABLE {name} ({COLUMNS})")
    return names


# --- the oracle ---------------------------------------------------------------


def _holds_nul(value: Any) -> bool:
    stack = [value]  # no recursion: records may nest as deep as orjson reads
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def oracle_decode_dead(rid: str, doc: bytes, nul_is_dead: bool = True) -> bool:
    """``nul_is_dead``: PostgreSQL cannot store NUL in text or jsonb (MariaDB can)."""
    try:
        row = orjson.loads(doc)
    except orjson.JSONDecodeError:
        return True
    if type(row) is not dict or (nul_is_dead and _holds_nul(row)):
        return True
    if row.get("id") is None:
        return True
    try:
        return canonical_id([row["id"]]) != rid
    except ValueError:
        return True


def reference(db: psycopg.Connection[Any], table: str, batch: list[tuple[str, bytes]]) -> set[str]:
    """Upsert each record with jsonb_populate_record over its current row; the dead ids."""
    dead = set()
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in NAMES[1:])
    for rid, doc in batch:
        if oracle_decode_dead(rid, doc):
            dead.add(rid)
            continue
        key = orjson.loads(doc)["id"]
        try:
            with db.transaction():
                db.execute(
                    f"INSERT INTO {table} SELECT * FROM jsonb_populate_record("
                    f"  COALESCE((SELECT x FROM {table} x WHERE x.id = %s::bigint), NULL::{table}), %s::jsonb)"
                    f" ON CONFLICT (id) DO UPDATE SET {sets}",
                    (str(key), doc.decode()),
                )
        except psycopg.Error:
            dead.add(rid)
    return dead


def rows_of(db: psycopg.Connection[Any], table: str) -> list[tuple[Any, ...]]:
    # As text: floats and jsonb compare by their exact stored text.
    return db.execute(f"SELECT x.id, x::text FROM {table} x ORDER BY x.id").fetchall()


def check(db: psycopg.Connection[Any], dsn: str, tables: dict[str, str], batches: list[list[tuple[str, bytes]]]):
    db.execute(f"TRUNCATE {tables['ref']}, {tables['python']}, {tables['c']}")
    expected_dead: set[str] = set()
    for batch in batches:
        expected_dead |= reference(db, tables["ref"], batch)
    expected = rows_of(db, tables["ref"])
    for impl in IMPLS:
        if impl == "c" and not speedups.available():
            continue
        dead = merge_via(impl, dsn, tables[impl], batches)
        got = rows_of(db, tables[impl])
        assert dead == expected_dead, (impl, dead ^ expected_dead)
        assert got == expected, impl


# --- generated records ----------------------------------------------------------

json_text = st.recursive(
    st.one_of(
        st.none().map(lambda _: "null"),
        st.booleans().map(lambda b: "true" if b else "false"),
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda f: orjson.dumps(f).decode()),
        st.sampled_from(
            [
                "1.50",
                "-0",
                "-0.0",
                "0.000",
                "1e3",
                "1E+2",
                "2.5e-3",
                "1e400",
                "1e-400",
                "123456789012345678901234567890.5",
            ]
        ),
        st.text().map(lambda s: json.dumps(s, ensure_ascii=False)),
        st.text().map(lambda s: json.dumps(s, ensure_ascii=True)),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.dictionaries(st.text(max_size=5).map(json.dumps), inner, max_size=4).map(
            lambda d: "{" + ",".join(f"{k}: {v}" for k, v in d.items()) + "}"
        ),
    ),
    max_leaves=8,
)


def typed_text(column: str) -> st.SearchStrategy[str]:
    """Mostly values of the column's type (so most records land), spelled in
    the ways a writer might; sometimes anything at all."""
    good: dict[str, st.SearchStrategy[Any]] = {
        "t": st.text(),
        "vc": st.text(max_size=14),
        "n": st.one_of(st.integers(-(10**30), 10**30), st.decimals(allow_nan=False, allow_infinity=False, places=4)),
        "i": st.integers(-(2**31), 2**31),
        "b": st.booleans(),
        "f": st.floats(allow_nan=False, allow_infinity=False),
        "r": st.floats(allow_nan=False, allow_infinity=False, width=32),
        "ta": st.lists(st.one_of(st.none(), st.text(max_size=6)), max_size=4),
        "ia": st.lists(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)), max_size=4),
        "ts": st.datetimes().map(lambda d: d.isoformat() + "Z"),
        "u": st.uuids().map(str),
        "d": st.dates().map(str),
        "nn": st.decimals(min_value=-9999, max_value=9999, places=3),
    }
    if column in ("j", "js"):
        return json_text
    spelled = good[column].map(lambda v: str(v) if type(v).__name__ in ("Decimal", "int") else orjson.dumps(v).decode())
    return st.one_of(spelled, spelled, spelled, json_text)


@st.composite
def records(draw: Any, ids: list[int]) -> list[tuple[str, bytes]]:
    out = []
    for key in ids:
        carried = draw(st.lists(st.sampled_from(NAMES[1:]), unique=True, max_size=len(NAMES) - 1))
        members = [f'"id": {key}'] + [f"{json.dumps(c)}: {draw(typed_text(c))}" for c in carried]
        if draw(st.booleans()):
            members.insert(draw(st.integers(0, len(members))), '"t": "an earlier duplicate"')
        out.append((str(key), ("{" + ", ".join(members) + "}").encode()))
    return out


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_records_give_identical_rows_and_dead_letters(data, db, dsn, tables):
    first = data.draw(records(list(range(12))))
    second = data.draw(records(data.draw(st.lists(st.integers(0, 20), unique=True, max_size=12))))
    check(db, dsn, tables, [first, second])


# --- traps ----------------------------------------------------------------------


def _deep(n: int) -> str:
    return "[" * n + "]" * n


TRAPS: list[tuple[str, str]] = [
    # COPY's own escapes in text, array and json values
    ("t", '"\\\\N"'),
    ("t", '"\\\\."'),
    ("t", '"a\\\\b\\tc\\nd\\re"'),
    ("t", '"\\b\\f\\/"'),
    ("ta", '["\\\\N", "a,b", "q\\"uote", "back\\\\slash", "tab\\t", "", "NULL", " sp "]'),
    ("j", '{"a": "\\\\.\\n", "b": [1.50, 1e3, -0]}'),
    ("js", '{"b": 1, "a": [1.0]}'),
    # characters
    ("t", '"\\u00e9\\ud834\\udd1e"'),
    ("t", '"\\u0000"'),
    ("t", '"\\ud800"'),
    ("t", '"\\udc00x"'),
    ("t", '"' + "x" * (1 << 20) + '"'),
    # numbers
    ("n", "18446744073709551616"),
    ("n", "9007199254740993"),
    ("n", "-0"),
    ("f", "-0.0"),
    ("f", "-0"),
    ("n", "1e400"),
    ("f", "1e-400"),
    ("f", "4.9e-324"),
    ("n", "1.50"),
    ("nn", "1.005"),
    ("nn", "123456.7"),
    ("i", "1e3"),
    ("i", "2147483648"),
    ("i", "1.0"),
    ("r", "3.4028235e38"),
    ("r", "0.1"),
    # numbers and objects into text, bools and strings into numbers
    ("t", "12.50"),
    ("t", "1e3"),
    ("t", "true"),
    ("t", '{"x": [1, 2]}'),
    ("t", "[1, 2]"),
    ("i", "true"),
    ("i", '"42"'),
    ("i", '" 42 "'),
    ("i", '"forty-two"'),
    ("b", '"yes"'),
    ("b", "1"),
    ("n", '"NaN"'),
    ("vc", '"0123456789abc"'),
    ("u", '"6F9619FF-8B86-D011-B42D-00C04FC964FF"'),
    ("u", '"{6f9619ff8b86d011b42d00c04fc964ff}"'),
    ("u", '"not-a-uuid"'),
    ("ts", '"2026-02-30T00:00:00Z"'),
    ("ts", '"2026-01-01 12:00:00+05:30"'),
    ("d", '"epoch"'),
    # arrays
    ("ia", "[1, null, 3]"),
    ("ia", "[[1, 2], [3, 4]]"),
    ("ia", "[[1, 2], [3]]"),
    ("ia", "[]"),
    ("ia", "[[]]"),
    ("ia", '"{1,2}"'),
    ("ia", "[1.5]"),
    ("ia", '[{"a": 1}]'),
    ("ta", "[true, 1.50, -0]"),
    ("ia", "7"),
    ("j", _deep(30)),
    ("j", _deep(70)),
    # past what orjson writes back (255 levels) and Python recurses: the jsonb path
    ("j", _deep(254)),
    ("j", _deep(255)),
    ("j", _deep(300)),
    ("j", _deep(600)),
    ("j", _deep(1024)),
    ("j", _deep(1100)),
    ("ia", _deep(300)),
]

RAW_TRAPS: list[bytes] = [
    b'{"id": %d, "t": "x"',  # truncated
    b'{"id": %d} trailing',
    b'{"id": %d,}',
    b'{"id": %d, "t": "\xff"}',  # invalid UTF-8
    b'{"id": %d, "t": "\xed\xa0\x80"}',  # an encoded surrogate
    b'{"id": %d, "t": "\xc0\xaf"}',  # overlong
    b'\xef\xbb\xbf{"id": %d}',  # BOM
    b"[%d]",
    b'"%d"',
    b'{"id": %d, "t": "a", "t": "b"}',  # duplicate keys: the last wins
    b'{"\\u0069d": %d, "\\u0074": "escaped keys"}',
    b'{"id": %d, "unknown": 1, "t": "x"}',
    b'{"id": %d.0}',
    b'{"id": -0}',
    b'{"id": "%d"}',
    b'{"id": %d, "t": "a\x01b"}',  # a raw control character
    b' \t\n\r{"id": %d, "t" : "spaced" } \n',
    b'{"id": %d, "j": {"a": 1, "a": 2}}',
    b'{"id": %d, "t": "\\u0000"}',
    b'{"id": %d, "t": "\\\\u0000 is text"}',
    b'{"id": %d, "t": null, "i": null}',
]


def trap_batch(start: int) -> list[tuple[str, bytes]]:
    batch = []
    for n, (column, text) in enumerate(TRAPS):
        key = start + n
        batch.append((str(key), f'{{"id": {key}, "{column}": {text}}}'.encode()))
    for n, raw in enumerate(RAW_TRAPS):
        key = start + len(TRAPS) + n
        batch.append((str(key), raw.replace(b"%d", str(key).encode())))
    return batch


@pytest.mark.parametrize("n", range(len(TRAPS) + len(RAW_TRAPS)))
def test_traps_give_identical_rows_and_dead_letters(n, db, dsn, tables):
    """Each trap in a batch of its own (a value the typed COPY refuses sends
    its whole batch the jsonb path, which would hide the others), beside a
    plain record; then again over the row it made, and over a full row."""
    trap = trap_batch(0)[n]
    plain = ("100000", b'{"id": 100000, "t": "plain", "n": 1.50, "ia": [1, 2]}')
    full = (trap[0], orjson.dumps({"id": int(trap[0]), **{c: None for c in NAMES[1:]}, "t": "old", "i": 7}))
    check(db, dsn, tables, [[trap, plain], [trap]])
    check(db, dsn, tables, [[full], [trap]])


def test_big_batches_of_mixed_records_agree(db, dsn, tables):
    """Many shapes and both paths in one batch (typed groups beside jsonb
    ones, as an application's records usually come)."""
    batch = []
    for key in range(3000):
        row: dict[str, Any] = {"id": key}
        if key % 2:
            row["t"] = f"name\t{key}\\"
        if key % 3:
            row["n"] = key / 7 if key % 5 else key
        if key % 7 == 0:
            row["j"] = {"k": key, "l": [key, str(key)]}
        if key % 11 == 0:
            row["ia"] = [key, None]
        if key % 13 == 0:
            row["i"] = "not a number"
        batch.append((str(key), orjson.dumps(row)))
    check(db, dsn, tables, [batch])


def test_floats_written_by_orjson_keep_their_values(db, dsn, tables):
    values = [0.1, 1e-7, 1e22, 5e-324, 1.7976931348623157e308, -2.5, 1 / 3, math.pi * 1e100]
    batch = [(str(k), orjson.dumps({"id": k, "f": v, "n": v, "t": v, "r": v})) for k, v in enumerate(values)]
    check(db, dsn, tables, [batch])
