"""No single record can strand its partition: whatever one record makes
raise while it is decoded, rendered (in C or in Python) or handed to its
sink, that record is dead-lettered (or sent down the path PostgreSQL
judges) and the rest of its batch lands."""

from __future__ import annotations

import pytest

from syncwd_fast import FastDrainer, Syncwd, Table, speedups
from syncwd_fast.sinks import records as records_module
from syncwd_fast.sinks.postgres import decode as decode_module
from syncwd_fast.sinks.postgres.merge import Merger

from .helpers import count, dead_entries, rows

IMPLS = [
    pytest.param("python", id="python"),
    pytest.param(
        "c", id="c", marks=[] if speedups.available() else [pytest.mark.skip(reason="the C speedup is not built")]
    ),
]


@pytest.fixture(params=IMPLS)
def impl(request, monkeypatch):
    monkeypatch.setattr(speedups, "ACTIVE", request.param)
    return request.param


@pytest.fixture
def t(db, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, j jsonb, t text)")
    return Table(f"{schema}.p")  # one partition: every record in one batch


def raw_write(r, t, prefix, record_id, value):
    keys = t.keys(0, prefix)
    r.set(keys.value(record_id), value)
    r.sadd(keys.dirty, record_id)


def good(r, t, prefix, n=100):
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "t": f"row {i}"} for i in range(1, n + 1)])


def deep(n):
    return "[" * n + "]" * n


@pytest.mark.parametrize("depth", [254, 255, 300, 600, 1024])
def test_a_deeply_nested_jsonb_value_never_strands_the_partition(depth, impl, r, db, dsn, prefix, t):
    good(r, t, prefix)
    raw_write(r, t, prefix, "1000", f'{{"id": 1000, "j": {deep(depth)}}}'.encode())
    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert report.aborted is None
    if depth < 1024:  # PostgreSQL stores it: it lands, on the jsonb path
        assert (report.upserted, report.dead_lettered, report.exit_code) == (101, 0, 0)
        stored = db.execute(f"SELECT jsonb_array_length(j), length(j::text) FROM {t.name} WHERE id = 1000").fetchone()
        assert stored == (1 if depth > 1 else 0, 2 * depth)
    else:  # deeper than orjson reads: a dead letter with the reason, the rest lands
        assert (report.upserted, report.dead_lettered, report.exit_code) == (100, 1, 1)
        assert "invalid JSON" in dead_entries(r, t.keys(0, prefix))["1000"]["error"]
    assert count(db, t.name) == 100 + (depth < 1024)
    # Records written later land too: nothing waits behind it.
    Syncwd(r, prefix=prefix).update(t, {"id": 5, "t": "later"})
    assert FastDrainer(r, dsn, prefix=prefix).drain().upserted == 1
    assert db.execute(f"SELECT t FROM {t.name} WHERE id = 5").fetchone() == ("later",)


def test_a_record_that_makes_decoding_raise_is_a_dead_letter(r, db, dsn, prefix, t, monkeypatch):
    monkeypatch.setattr(speedups, "ACTIVE", "python")
    real = records_module.canonical_id

    def canonical_id(values):
        if values == [13]:
            raise OverflowError("an injected fault")
        return real(values)

    monkeypatch.setattr(records_module, "canonical_id", canonical_id)
    good(r, t, prefix)
    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert (report.upserted, report.dead_lettered, report.exit_code) == (99, 1, 1)
    entry = dead_entries(r, t.keys(0, prefix))["13"]
    assert entry["error"] == "cannot be decoded: OverflowError: an injected fault"
    assert count(db, t.name) == 99


def test_a_record_that_makes_python_rendering_raise_goes_the_jsonb_path(r, db, dsn, prefix, t, monkeypatch):
    monkeypatch.setattr(speedups, "ACTIVE", "python")
    real = decode_module.render

    def render(kind, value):
        if value == "explode":
            raise RecursionError("an injected fault")
        return real(kind, value)

    monkeypatch.setattr(decode_module, "render", render)
    good(r, t, prefix)
    Syncwd(r, prefix=prefix).update(t, {"id": 500, "j": "explode", "t": "x"})
    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert (report.upserted, report.dead_lettered, report.exit_code) == (101, 0, 0)
    assert rows(db, f"{t.name} WHERE id = 500") == [(500, "explode", "x")]


@pytest.mark.skipif(not speedups.available(), reason="the C speedup is not built")
def test_a_batch_the_c_decoder_fails_on_is_decoded_in_python(r, db, dsn, prefix, t, monkeypatch):
    monkeypatch.setattr(speedups, "ACTIVE", "c")
    real_decoder = decode_module.Decoder.__init__

    class Failing:
        def __init__(self, c):
            self.c = c

        def decode(self, ids, values, *rest):
            if "13" in ids:
                raise MemoryError("an injected fault in C")
            return self.c.decode(ids, values, *rest)

    def init(self, *args, **kwargs):
        real_decoder(self, *args, **kwargs)
        assert self._c is not None
        self._c = Failing(self._c)

    monkeypatch.setattr(decode_module.Decoder, "__init__", init)
    good(r, t, prefix)
    raw_write(r, t, prefix, "2000", b'{"id": 2000, "t": 1}}')  # bad JSON: still a dead letter the Python way
    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert (report.upserted, report.dead_lettered, report.exit_code) == (100, 1, 1)
    assert dead_entries(r, t.keys(0, prefix))["2000"]["error"].startswith("invalid JSON")
    assert count(db, t.name) == 100


def test_a_record_the_postgresql_sink_raises_on_is_a_dead_letter(impl, r, db, dsn, prefix, t, monkeypatch):
    """The hand-off to the sink: an unforeseen exception while merging, that
    some records trigger and others do not, is pinned on them."""
    real = Merger.merge

    def merge(self, batch, **options):
        if any(item[1] == "13" for item in batch.items):
            raise TypeError("an injected fault while merging")
        return real(self, batch, **options)

    monkeypatch.setattr(Merger, "merge", merge)
    good(r, t, prefix)
    report = FastDrainer(r, dsn, prefix=prefix).drain()
    assert (report.upserted, report.dead_lettered, report.exit_code) == (99, 1, 1)
    entry = dead_entries(r, t.keys(0, prefix))["13"]
    assert entry["error"] == "the sink failed on this record: TypeError: an injected fault while merging"
    assert count(db, t.name) == 99
