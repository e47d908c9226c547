"""Identifiers, canonical ids, partitions and the Table definition."""

import pytest

from syncwd_fast import Table
from syncwd_fast.keys import PartitionKeys, canonical_id, partition_of, validate_identifier


@pytest.mark.parametrize("name", ["users", "_x", "Player_2", "a" * 63])
def test_plain_identifiers_pass(name):
    assert validate_identifier(name) == name


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", 'a"b', "a;drop", "{x}", "a:b", "a" * 64, "é"])
def test_anything_else_is_refused(name):
    with pytest.raises(ValueError, match="invalid"):
        validate_identifier(name)


@pytest.mark.parametrize("name", ["a.b.c", "a.", ".b", "a:b", "x{1}", "users; drop table x"])
def test_table_names_are_validated(name):
    with pytest.raises(ValueError, match="table"):
        Table(name)


def test_table_defaults_and_schema_names():
    t = Table("game.progress", key=("user_id", "game_id"), partitions=8)
    assert t.key_columns == ("user_id", "game_id") and t.ttl == 7 * 24 * 3600
    with pytest.raises(ValueError):
        Table("t", key=())
    with pytest.raises(ValueError):
        Table("t", partitions=0)
    with pytest.raises(ValueError):
        Table("t", ttl=-1)
    with pytest.raises(ValueError):
        Table("t", key=("a", "a"))


def test_canonical_ids():
    assert canonical_id([42]) == "42"
    assert canonical_id(["abc"]) == "abc"
    assert canonical_id([7, "x"]) == '[7,"x"]'
    assert canonical_id([True]) == "true"


def test_partition_is_stable_crc32():
    assert partition_of("42", 1) == 0
    assert partition_of("42", 16) == 841265288 % 16
    assert {partition_of(str(i), 4) for i in range(100)} == {0, 1, 2, 3}


def test_key_layout_is_the_documented_contract():
    k = PartitionKeys("syncwd", "game.progress", 3)
    assert k.dirty == "syncwd:{game.progress:3}:dirty"
    assert k.value("42") == "syncwd:{game.progress:3}:v:42"
    assert k.run("R") == "syncwd:{game.progress:3}:run:R"
    assert k.inflight("R") == "syncwd:{game.progress:3}:run:R:inflight"
    assert (k.meta, k.lease, k.dead) == (
        "syncwd:{game.progress:3}:meta",
        "syncwd:{game.progress:3}:lease",
        "syncwd:{game.progress:3}:dead",
    )


def test_registry_round_trip():
    t = Table("s.t", key=("a", "b"), partitions=4, ttl=0, version_column="v")
    assert Table.from_registry("s.t", t.to_registry()) == t
    with pytest.raises(ValueError, match="registry"):
        Table.from_registry("x", b"{nope")
