"""The C speedup and its pure-Python twin: which one runs, that the C one is
built here, and that both decode every batch alike, down to bytes no JSON
parser should see (a fuzz test of the C scanner)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from syncwd_fast import speedups
from syncwd_fast.sinks.postgres.decode import Decoded, Decoder
from syncwd_fast.sinks.postgres.render import render
from syncwd_fast.sinks.postgres.schema import TableSchema
from syncwd_fast.table import Table

needs_c = pytest.mark.skipif(not speedups.available(), reason="the C speedup is not built")

COLUMNS = ("id", "name", "score", "tags", "doc", "raw", "f", "other")
KINDS = "sssajJfx"  # text-like, an array, jsonb, json, float8, a composite


def schema(key: tuple[str, ...] = ("id",)) -> TableSchema:
    types = tuple((c, "text") for c in COLUMNS)
    return TableSchema(Table("s.t", key=key), sql.Identifier("s", "t"), COLUMNS, types=types, kinds=KINDS)


def run(env: dict[str, str], code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_the_c_speedup_is_built_by_this_checkouts_install():
    # ./run test installs the project with its extension; only an install that
    # was asked not to build it may lack it.
    if os.environ.get("SYNCWD_FAST_NO_EXTENSIONS") == "1":
        pytest.skip("SYNCWD_FAST_NO_EXTENSIONS=1")
    assert speedups.available()


def test_a_sanitized_run_tests_the_sanitized_build():
    build = os.environ.get("SYNCWD_SANITIZED_BUILD")
    if not build:
        pytest.skip("not under .ci/sanitize")
    assert speedups.module().__file__ == build


@needs_c
def test_speedups_says_which_implementation_runs_and_the_env_var_forces_python():
    code = "import syncwd_fast; print(syncwd_fast.SPEEDUPS)"
    assert run({"SYNCWD_FAST_PURE": ""}, code) == "c"
    assert run({"SYNCWD_FAST_PURE": "1"}, code) == "python"
    assert run({"SYNCWD_FAST_PURE": "0"}, code) == "c"
    version = [sys.executable, "-m", "syncwd_fast", "--version"]
    assert "speedups: c" in subprocess.run(version, capture_output=True, text=True, check=True).stdout
    forced = subprocess.run(
        version, capture_output=True, text=True, check=True, env={**os.environ, "SYNCWD_FAST_PURE": "1"}
    ).stdout
    assert "speedups: python (SYNCWD_FAST_PURE=1)" in forced


LINE_1 = b'1\t0\tf\t\\N\t1\tp\\t1\\\\\t3\t{"a",NULL,"q\\\\""}\t{"k":[1]}\t\\N\t\\N\t\\N\n'


def decode_both(ids: list[str], values: list[Any], key: tuple[str, ...] = ("id",), strict: bool = False):
    recreated = {rid: "7" for rid in ids[::5]}
    pure = Decoder(schema(key), strict, pure=True).decode(ids, values, recreated)
    c = Decoder(schema(key), strict, pure=False).decode(ids, values, recreated)
    for out in (pure, c):  # the merge reads the typed columns alone when this says so
        assert out.jsonb == any(line.split(b"\t")[3] != b"\\N" for *_, line in out.items)
    return pure, c


def summary(d: Decoded) -> tuple[Any, ...]:
    """What must agree: dead letters (ids and reasons), which ids became
    items (in order, as tombstones or not), replacements, unknown keys."""
    items = [(rid, g == -1, d.columns[g] if g != -1 else None, doc) for g, rid, doc, _ in d.items]
    return (sorted(d.dead), items, d.replace, d.unknown)


@needs_c
def test_wide_records_are_typed_by_both_and_give_the_same_lines():
    ids = [str(i) for i in range(200)]
    values = [
        orjson.dumps({"id": i, "name": f"p\t{i}\\", "score": i * 3, "tags": ["a", None, 'q"'], "doc": {"k": [i]}})
        for i in range(200)
    ]
    pure, c = decode_both(ids, values)
    assert summary(pure) == summary(c)
    typed = [line.split(b"\t")[3] == b"\\N" for out in (pure, c) for *_, line in out.items]
    assert all(typed)  # no record needed the jsonb path
    assert [line for *_, line in pure.items] == [line for *_, line in c.items]
    # COPY escapes on top of the array literal's own quoting
    assert pure.items[1][3] == LINE_1


TRICKY = [
    b'{"id": 1, "name": "x"}',
    b'{"id": "1", "name": "x"}',
    b'{"id": 1.0}',
    b'{"id": -0}',
    b'{"id": 12345678901234567890}',
    b'{"id": true}',
    b'{"id": null}',
    b'{"name": "no key"}',
    b"[1]",
    b"",
    b"~",
    b'~{"id": 1}',
    b'~{"id": 1, "name": "tombstones carry their key only"}',
    b'{"id": 1, "other": {"composite": 1}}',
    b'{"id": 1, "raw": {"b": 1, "a": 2}}',
    b'{"id": 1, "f": 1e-400}',
    b'{"id": 1, "f": -0.0}',
    b'{"id": 1, "score": 1e400}',
    b'{"id": 1, "nope": 1}',
    b'{"id": 1, "name": "\\u0000"}',
    b'{"id": 1, "\\u0000": 1}',
    b'{"id": 1, "name": "\\ud800"}',
    b'{"id": 1, "tags": [[1], [2]]}',
    b'{"id": 1, "tags": "{1}"}',
    b'{"id": 1}{"id": 1}',
]


@needs_c
@pytest.mark.parametrize("strict", [False, True])
def test_tricky_records_decode_alike(strict):
    ids = ["1"] * len(TRICKY) + ["not-1"] * len(TRICKY)
    values: list[Any] = TRICKY + TRICKY
    for i in range(len(values)):
        pure, c = decode_both([ids[i]], [values[i]], strict=strict)
        assert summary(pure) == summary(c), values[i]
    pure, c = decode_both(["1", "2"], [None, "a str value"])
    assert summary(pure) == summary(c)


@needs_c
def test_composite_keys_render_their_ids_alike():
    key = ("id", "name")
    cases = [
        ('[1,"a"]', b'{"id": 1, "name": "a"}'),
        ('[1,"\xe9"]', b'{"id": 1, "name": "\\u00e9"}'),
        ('[1,"a\\"b"]', b'{"id": 1, "name": "a\\"b"}'),
        ('[1,"a\\nb"]', b'{"id": 1, "name": "a\\nb"}'),
        ("[1,2]", b'{"id": 1, "name": 2}'),
        ('["1","a"]', b'{"id": "1", "name": "a"}'),
        ("[1,2]", b'{"id": 1, "name": "2"}'),
    ]
    for rid, doc in cases:
        pure, c = decode_both([rid], [doc], key=key)
        assert summary(pure) == summary(c), doc


# --- render: the C rules against the Python ones ---------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner)),
    max_leaves=12,
)


@needs_c
@settings(max_examples=500, deadline=None)
@given(value=values, kind=st.sampled_from("sfjJax"))
def test_c_renders_what_python_renders_or_hands_the_value_back(value, kind):
    """Where both render, the same text (floats aside: C keeps their JSON
    text, Python their shortest round trip, which both read to one value)."""
    text = orjson.dumps(value)
    c = speedups.module().render(kind, text)
    # orjson's own output is scanned, but for what C leaves to Python on purpose
    if c is False:
        assert _left_to_python(value)
        return
    py = render(kind, orjson.loads(text))
    if c is not None and py is not None and not _has_float(value):
        assert c == py.encode()
    if kind in "Jx" and value is not None:
        assert c is None and py is None


def _left_to_python(value: Any) -> bool:
    """An escaped NUL (Python words its dead letter), or a number near the
    double's limit (orjson may refuse it as infinite)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, float):
        return abs(value) >= 1e307
    if isinstance(value, dict):
        return any(_left_to_python(k) or _left_to_python(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_left_to_python(v) for v in value)
    return False


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


# --- fuzz: random and mutated bytes into the C scanner ------------------------------

SEEDS = [
    *TRICKY,
    orjson.dumps({"id": 1, "name": "x\ty\\z\u00e9\U0001d11e", "score": -12.5e3, "tags": [1, "a", None, True]}),
    b'{"id": 1, "doc": {"a": [1, {"b": [2, [3, {"c": null}]]}]}, "raw": "\\ud834\\udd1e"}',
]


def mutate(rng: random.Random, doc: bytes) -> bytes:
    data = bytearray(doc)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:
            del data[min(at, len(data) - 1)]
        elif op == 1:
            data.insert(at, rng.randrange(256))
        elif op == 2 and data:
            data[min(at, len(data) - 1)] = rng.choice(b'{}[]",:\\-+.eE0123456789 tfn\x00\x7f\xc3\xed\xf4\xff')
        elif op == 3:
            data[at:at] = rng.choice([b"\\u", b"\\ud800", b"\\udc00", b"1e999", b"-0", b'"', b"[" * 80])
        else:
            data = data[:at]
    return bytes(data)


@needs_c
def test_fuzz_the_c_scanner_with_mutated_records():
    """Never a crash, and every batch decodes as the pure decoder decodes it.
    (.ci/run repeats this under AddressSanitizer and UBSan.)"""
    rng = random.Random(int(os.environ.get("SYNCWD_FUZZ_SEED", "20261128")))
    rounds = int(os.environ.get("SYNCWD_FUZZ_ROUNDS", "3000"))
    module = speedups.module()
    for _ in range(rounds):
        batch = [mutate(rng, rng.choice(SEEDS)) for _ in range(8)]
        ids = [rng.choice(["1", "x", '[1,"x"]']) for _ in batch]
        pure, c = decode_both(ids, batch)
        assert summary(pure) == summary(c), batch
        for doc in batch:
            seen = module.render(rng.choice("sfjJax"), doc)
            if seen is not False:  # what the scanner accepts, orjson accepts
                orjson.loads(doc)


@needs_c
@settings(max_examples=300, deadline=None)
@given(doc=st.binary(max_size=64))
def test_fuzz_the_c_scanner_with_random_bytes(doc):
    pure, c = decode_both(["1"], [doc])
    assert summary(pure) == summary(c)
    if speedups.module().render("j", doc) is not False:
        orjson.loads(doc)
