"""The drain's per-id C helpers give what their Python twins give: ids as
text (``scripts.ids_text``), the packed MGET of a pop's values
(``scripts.mget_command``) and a batch's stage lines joined in key order
(``merge.copy_payload``); they refuse what is not theirs with an error, never
a crash (.ci/sanitize runs this file under ASan/UBSan)."""

from __future__ import annotations

import os
import random

import hiredis
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from syncwd_fast import scripts, speedups
from syncwd_fast.sinks.postgres.merge import copy_payload
from syncwd_fast.wire import Wire

needs_c = pytest.mark.skipif(not speedups.available(), reason="the C speedup is not built")
ROUNDS = int(os.environ.get("SYNCWD_FUZZ_ROUNDS", "3000"))

IDS = st.lists(
    st.binary(max_size=12)
    | st.sampled_from([b"\x00", b"a\x00b", b"\xff\xfe", b"\xc3\xa9", b"\xed\xa0\x80", b"", b"~", b"\r\n$3"]),
    max_size=300,
)


@needs_c
@settings(max_examples=400, deadline=None)
@given(raw=IDS)
def test_ids_text_in_c_is_its_python_twin(raw: list[bytes]) -> None:
    c = scripts.ids_text(raw, pure=False)
    assert c == scripts.ids_text(raw, pure=True) == [scripts._id_text(i) for i in raw]
    assert [scripts.id_wire(i) for i in c] == raw  # any bytes come back as they were


@needs_c
@settings(max_examples=400, deadline=None)
@given(raw=IDS, prefix=st.binary(max_size=40))
def test_mget_command_in_c_is_what_hiredis_packs(raw: list[bytes], prefix: bytes) -> None:
    expected = hiredis.pack_command((b"MGET", *[prefix + i for i in raw]))
    assert scripts.mget_command(prefix, raw, pure=False) == expected
    assert scripts.mget_command(prefix, raw, pure=True) == expected


@needs_c
@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.binary(max_size=30), max_size=80), data=st.data())
def test_ordered_lines_in_c_is_copy_payload(lines: list[bytes], data: st.DataObject) -> None:
    items = [(0, str(n), b"{}", line) for n, line in enumerate(lines)]
    order = data.draw(st.lists(st.integers(0, len(items) - 1), max_size=100)) if items else []
    assert copy_payload(items, order, pure=False) == copy_payload(items, order, pure=True)


def test_mget_command_sent_as_it_is_reads_the_values(r: redis.Redis, prefix: str) -> None:
    wire = Wire.of(r)
    assert wire is not None
    value_prefix = f"{prefix}:v:".encode()
    raw = [b"1", b"\xff", b"a b", b"\r\n"]
    r.mset({value_prefix + raw[0]: b"one", value_prefix + raw[2]: b"three"})
    for pure in (True, False) if speedups.available() else (True,):
        (got,) = wire.send(scripts.mget_command(value_prefix, raw, pure=pure), 1)
        assert got == [b"one", None, b"three", None]


@needs_c
def test_the_c_helpers_refuse_what_is_not_theirs() -> None:
    c = speedups.module()
    with pytest.raises(TypeError):
        c.ids_text([b"1", "2"])
    with pytest.raises(TypeError):
        c.ids_text((b"1",))
    with pytest.raises(TypeError):
        c.mget_command(b"p", [b"1", 2])
    with pytest.raises(TypeError):
        c.mget_command("p", [b"1"])
    items = [(0, "1", b"{}", b"a\n"), (0, "2", b"{}", "b"), (0, "3")]
    with pytest.raises(TypeError):
        c.ordered_lines(items, [1])
    with pytest.raises(TypeError):
        c.ordered_lines(items, [2])
    with pytest.raises(IndexError):
        c.ordered_lines(items, [3])
    with pytest.raises(IndexError):
        c.ordered_lines(items, [-1])
    with pytest.raises(TypeError):
        c.ordered_lines(items, ["0"])
    with pytest.raises(OverflowError):
        c.ordered_lines(items, [2**70])
    assert c.ordered_lines(items, [0, 0]) == b"a\na\n"


@needs_c
def test_fuzz_the_c_helpers_with_random_lists() -> None:
    c = speedups.module()
    rng = random.Random(16)
    junk: list[object] = [b"", b"\xff" * 3, "text", 7, None, (0, "1", b"{}", b"x"), (0,), 2**64, -1]
    for _ in range(ROUNDS):
        n = rng.randrange(8)
        values = [rng.choice(junk) if rng.random() < 0.2 else rng.randbytes(rng.randrange(6)) for _ in range(n)]
        items = [v if isinstance(v, tuple) else (0, "1", b"", v) for v in values]
        order = [rng.randrange(-2, 10) for _ in values]
        for name, args in (
            ("ids_text", (values,)),
            ("mget_command", (rng.randbytes(3), values)),
            ("ordered_lines", (items, order, rng.randrange(0, 3))),
        ):
            try:
                getattr(c, name)(*args)
            except (TypeError, IndexError, OverflowError, ValueError):
                pass
