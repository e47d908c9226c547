"""The MariaDB sink against MariaDB itself: identical rows and dead letters.

The oracle shares no code with the sink. A record is dead when orjson refuses
it, it is no object, or its key does not render to its id (the documented
decode rules, as in tests/test_differential.py), or when MariaDB refuses the
upsert of the values its own JSON functions read from the document: for each
column the record carries, ``JSON_VALUE(doc, '$."c"')`` (a string's text, a
number's own text, 1/0 for booleans), ``JSON_COMPACT(JSON_EXTRACT(...))`` for
an object or array or for any value into a JSON column, NULL for JSON null;
one ``INSERT ... ON DUPLICATE KEY UPDATE`` of just those columns per record,
in strict mode; a number or boolean into a YEAR column as ``JSON_VALUE(...) +
0``, a number. That is the typing rule of sinks/mysql/render.py, stated in
SQL. Objects and arrays compare as JSON: the rule writes their compact JSON
with characters as they are, JSON_COMPACT keeps the document's escapes; so
none goes into a column of limited length, where the escapes would count.
Left out of the generated data: the rule's other two additions (offsets into
DATETIME, which MariaDB refuses and the sink turns to UTC; repeated keys,
where MariaDB's JSON functions take the first and the sink the last).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncwd_fast.sinks.base import Batch
from syncwd_fast.sinks.mysql import MySQLSink
from syncwd_fast.table import Table

from .test_differential import json_text, oracle_decode_dead

COLUMNS = (
    "id BIGINT PRIMARY KEY, t TEXT, vc VARCHAR(12), n DECIMAL(30,4), i INT, b BOOLEAN, f DOUBLE, j JSON,"
    " ts DATETIME(6), d DATE, u CHAR(36), e ENUM('a','b','c'), bu BIGINT UNSIGNED, y YEAR"
)
NAMES = [c.split()[0] for c in COLUMNS.split(", ")]
JSON_COLUMNS = {"j"}
SHORT_COLUMNS = {"vc", "u", "e"}


NUMBER_COLUMNS = {"y"}  # BIT and YEAR: a number or boolean goes as a number
NUMBER_TYPES = ("INTEGER", "DOUBLE", "BOOLEAN")


def _expr(column: str, json_type: str | None = None) -> str:
    path = f"'$.\"{column}\"'"
    value = f"JSON_EXTRACT(%(doc)s, {path})"
    if column in NUMBER_COLUMNS and json_type in NUMBER_TYPES:
        return f"JSON_VALUE(%(doc)s, {path}) + 0"
    if column in JSON_COLUMNS:
        return f"IF(JSON_TYPE({value}) = 'NULL', NULL, JSON_COMPACT({value}))"
    return (
        f"CASE JSON_TYPE({value}) WHEN 'NULL' THEN NULL WHEN 'OBJECT' THEN JSON_COMPACT({value})"
        f" WHEN 'ARRAY' THEN JSON_COMPACT({value}) ELSE JSON_VALUE(%(doc)s, {path}) END"
    )


def reference(conn: Any, table: str, batch: list[tuple[str, bytes]]) -> set[str]:
    dead = set()
    for rid, doc in batch:
        if oracle_decode_dead(rid, doc, nul_is_dead=False):
            dead.add(rid)
            continue
        carried = [c for c in orjson.loads(doc) if c in NAMES]
        cols = ", ".join(f"`{c}`" for c in carried)
        sets = ", ".join(f"`{c}` = VALUES(`{c}`)" for c in carried if c != "id") or "`id` = `id`"
        types = {}
        with conn.cursor() as cur:
            for c in NUMBER_COLUMNS.intersection(carried):
                cur.execute(f"SELECT JSON_TYPE(JSON_EXTRACT(%(doc)s, '$.\"{c}\"'))", {"doc": doc.decode()})
                types[c] = cur.fetchone()[0]
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"INSERT INTO {table} ({cols}) SELECT {', '.join(_expr(c, types.get(c)) for c in carried)}"
                    f" ON DUPLICATE KEY UPDATE {sets}",
                    {"doc": doc.decode()},
                )
        except Exception:  # the server refused it: a dead letter
            dead.add(rid)
    return dead


def _cell(value: Any) -> Any:
    """JSON text compares as JSON (escapes and spacing are no part of the rule)."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return ("json", json.dumps(json.loads(value), sort_keys=True))
        except ValueError:
            pass
    return value


def rows_of(conn: Any, table: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM {table} ORDER BY id")
        names = [d[0] for d in cur.description]
        return [
            tuple(_json(v) if n in JSON_COLUMNS else _cell(v) for n, v in zip(names, row)) for row in cur.fetchall()
        ]


def _json(value: Any) -> Any:
    """A JSON column compares as JSON ("\u007f" and its character are one string)."""
    return None if value is None else ("json", json.dumps(json.loads(value), sort_keys=True))


def check(conn: Any, dsn: str, batches: list[list[tuple[str, bytes]]]) -> None:
    with conn.cursor() as cur:
        cur.execute("TRUNCATE ref")
        cur.execute("TRUNCATE via_sink")
        cur.execute(
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
            "NO_ENGINE_SUBSTITUTION', time_zone = '+00:00'"
        )
    expected_dead: set[str] = set()
    for batch in batches:
        expected_dead |= reference(conn, "ref", batch)
    sink = MySQLSink(dsn)
    dead: set[str] = set()
    try:
        table = Table("via_sink", key="id")
        sink.open()
        sink.check(table)
        for batch in batches:
            written = sink.write(Batch(table, 0, "t", ids=[i for i, _ in batch], values=[v for _, v in batch]))
            dead |= set(written.rejected)
    finally:
        sink.close()
    docs = {rid: doc for batch in batches for rid, doc in batch}
    assert dead == expected_dead, {rid: docs[rid] for rid in dead ^ expected_dead}
    assert rows_of(conn, "via_sink") == rows_of(conn, "ref")


def setup(conn: Any) -> None:
    with conn.cursor() as cur:
        for name in ("ref", "via_sink"):
            cur.execute(f"CREATE TABLE IF NOT EXISTS {name} ({COLUMNS})")


def typed_text(column: str) -> st.SearchStrategy[str]:
    """Mostly values the column takes, spelled as writers do; sometimes anything."""
    good: dict[str, st.SearchStrategy[Any]] = {
        "t": st.text(),
        "vc": st.text(max_size=14),
        "n": st.one_of(st.integers(-(10**27), 10**27), st.decimals(allow_nan=False, allow_infinity=False, places=5)),
        "i": st.integers(-(2**31), 2**31),
        "b": st.one_of(st.booleans(), st.integers(-1, 2)),
        "f": st.floats(allow_nan=False, allow_infinity=False),
        "ts": st.datetimes().map(lambda d: d.isoformat()),
        "d": st.dates().map(str),
        "u": st.uuids().map(str),
        "e": st.sampled_from(["a", "b", "c", "d", ""]),
        "bu": st.integers(-1, 2**64),
        "y": st.integers(1900, 2200),
    }
    if column in JSON_COLUMNS:
        return json_text
    spelled = good[column].map(lambda v: str(v) if type(v).__name__ in ("Decimal", "int") else orjson.dumps(v).decode())
    # No objects or arrays into a short column: their escapes count in the length (see the module's doc).
    anything = SCALAR_TEXT if column in SHORT_COLUMNS else json_text
    return st.one_of(spelled, spelled, spelled, anything)


SCALAR_TEXT = st.one_of(
    st.just("null"),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: orjson.dumps(f).decode()),
    st.text().map(lambda t: json.dumps(t, ensure_ascii=False)),
    st.text().map(json.dumps),
)


@st.composite
def records(draw: Any, ids: list[int]) -> list[tuple[str, bytes]]:
    out = []
    for key in ids:
        carried = draw(st.lists(st.sampled_from(NAMES[1:]), unique=True, max_size=len(NAMES) - 1))
        members = [f'"id": {key}'] + [f"{json.dumps(c)}: {draw(typed_text(c))}" for c in carried]
        out.append((str(key), ("{" + ", ".join(members) + "}").encode()))
    return out


def _no_repeated_keys(batch: list[tuple[str, bytes]]) -> bool:
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError("repeated key")
        return dict(pairs)

    try:
        for _, doc in batch:
            json.loads(doc, object_pairs_hook=unique)
    except ValueError:
        return False
    return True


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_records_give_identical_rows_and_dead_letters(data, mysql_db):
    dsn, conn = mysql_db
    setup(conn)
    first = data.draw(records(list(range(12))).filter(_no_repeated_keys))
    second = data.draw(
        records(data.draw(st.lists(st.integers(0, 20), unique=True, max_size=12))).filter(_no_repeated_keys)
    )
    check(conn, dsn, [first, second])


TRAPS: list[tuple[str, str]] = [
    ("t", '"\\\\N"'),
    ("t", '"a\\\\b\\tc\\nd\\re"'),
    ("t", '"\'; DROP TABLE ref; --"'),
    ("t", '"\\u00e9\\ud834\\udd1e"'),
    ("t", '"\\u0000x"'),
    ("t", "12.50"),
    ("t", "-0"),
    ("t", "-0.0"),
    ("t", "1E+2"),
    ("t", "1e3"),
    ("t", "true"),
    ("t", '{"x": [1, 2.50]}'),
    ("t", "[1, 2]"),
    ("t", "18446744073709551617"),
    ("n", "18446744073709551616"),
    ("n", "1.00005"),
    ("n", "-0"),
    ("n", "1e400"),
    ("n", '"12.5"'),
    ("i", "1e3"),
    ("i", "1.5"),
    ("i", "2147483648"),
    ("i", '" 42 "'),
    ("i", "true"),
    ("i", '"forty"'),
    ("b", "true"),
    ("b", "2"),
    ("b", '"yes"'),
    ("f", "1e400"),
    ("f", "-0.0"),
    ("f", "4.9e-324"),
    ("vc", '"0123456789abc"'),
    ("vc", '"🎲🎲🎲"'),
    ("ts", '"2026-02-30T00:00:00"'),
    ("ts", '"2026-01-01T12:00:00.1234567"'),
    ("ts", '"0000-00-00 00:00:00"'),
    ("d", '"2026-1-1"'),
    ("u", '"not-a-uuid-but-fits"'),
    ("e", '"c"'),
    ("e", '"z"'),
    ("e", "2"),
    ("bu", "-1"),
    ("bu", "18446744073709551615"),
    ("bu", "18446744073709551616"),
    ("y", "99"),
    ("y", '"abcd"'),
    ("j", '"a string"'),
    ("j", "1.50"),
    ("j", "true"),
    ("j", '{"b": 1, "a": [1.0, "x\\u00e9"]}'),
    ("j", "[" * 300 + "]" * 300),
]


def test_traps_give_identical_rows_and_dead_letters(mysql_db):
    """Each trap in a batch of its own beside a plain record, then over a row
    it made and over a full row."""
    dsn, conn = mysql_db
    setup(conn)
    for n, (column, text) in enumerate(TRAPS):
        trap = (str(n), f'{{"id": {n}, "{column}": {text}}}'.encode())
        plain = ("100000", b'{"id": 100000, "t": "plain", "n": 1.50, "i": 7}')
        full = (str(n), orjson.dumps({"id": n, "t": "old", "i": 7, "n": "2.5", "b": True, "d": "2026-01-02"}))
        try:
            check(conn, dsn, [[trap, plain], [trap]])
            check(conn, dsn, [[full], [trap]])
        except AssertionError as exc:
            raise AssertionError(f"trap {column} = {text[:60]}: {exc}") from exc
