"""The drain's per-batch shortcuts give what the per-id loops they replace
give: ids as text (scripts.ids_text), values of either kind of client
(scripts._values), a pop's ids recorded once (scripts._popped), the
tombstones of a batch (partition.tombstones)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from syncwd_fast import scripts
from syncwd_fast.partition import tombstones

IDS = st.lists(st.binary(max_size=6) | st.sampled_from([b"\x00", b"a\x00b", b"\xff\xfe", b"\xc3\xa9", b"", b"~"]))


@settings(max_examples=300, deadline=None)
@given(raw=IDS)
def test_ids_text_is_each_id_as_text(raw: list[bytes]) -> None:
    assert scripts.ids_text(raw) == [scripts._id_text(i) for i in raw]


VALUES = st.lists(
    st.none() | st.binary(max_size=8) | st.sampled_from([b"~", b"~{}", b'{"a":"\n~"}', b"\n~", b"x\n", b""]),
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(values=VALUES)
def test_tombstones_are_the_values_starting_with_the_marker(values: list[bytes | None]) -> None:
    ids = [str(n) for n in range(len(values))]
    expected = {rid for rid, raw in zip(ids, values) if raw is not None and raw[:1] == b"~"}
    assert tombstones(ids, values) == expected


def test_values_of_a_bytes_client_are_kept_and_a_text_client_s_encoded() -> None:
    got = [None, b"a", None]
    assert scripts._values(got) is got
    assert scripts._values([None, "\u00e9", None]) == [None, "\u00e9".encode(), None]
    assert scripts._values([None, None]) == [None, None]


def _taken(raw: list[bytes], number: int, again: bool = False, recreated: list[object] | None = None) -> scripts.Taken:
    return scripts.Taken(raw, 1, recreated or [], number, again)


def _loop(taken: scripts.Taken, values: list[bytes | None], seen: set[str], into: scripts.Popped) -> None:
    """The per-id rule of _popped for a pass that is not repeated."""
    ids = [scripts._id_text(i) for i in taken.raw]
    for rid, value, generation in zip(ids, values, taken.recreated or [None] * len(ids)):
        if rid in seen:
            continue
        seen.add(rid)
        into.ids.append(rid)
        into.values.append(value)
        if generation is not None:
            into.recreated[rid] = scripts._text(generation)  # type: ignore[arg-type]
    into.pops.append((taken.number, ids))


def test_popped_records_each_id_once_as_its_per_id_rule_does() -> None:
    rng = random.Random(5)
    for _ in range(300):
        seen_a: set[str] = set()
        seen_b: set[str] = set()
        a, b = scripts.Popped([], [], 1), scripts.Popped([], [], 1)
        for number in range(4):
            raw = [str(rng.randrange(30)).encode() for _ in range(rng.randrange(6))]
            values: list[bytes | None] = [b"v" + i for i in raw]
            recreated: list[object] = [rng.choice([None, b"g1"]) for _ in raw] if rng.random() < 0.3 else []
            scripts._popped(_taken(raw, number, recreated=recreated), values, seen_a, a)
            _loop(_taken(raw, number, recreated=recreated), values, seen_b, b)
        assert (a.ids, a.values, a.recreated, a.pops) == (b.ids, b.values, b.recreated, b.pops)
        assert seen_a == seen_b
