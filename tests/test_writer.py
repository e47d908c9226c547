"""The write side: Syncwd.update / update_many / delete / get."""

import dataclasses

import orjson
import pydantic
import pytest
import redis as redis_lib

from syncwd_fast import Syncwd, Table
from syncwd_fast.errors import ConfigurationError
from syncwd_fast.keys import registry_key

T = Table("progress", key="user_id", partitions=4, ttl=60)


def test_update_stores_latest_state_and_marks_dirty(r, prefix):
    sw = Syncwd(r, prefix=prefix)
    assert sw.update(T, {"user_id": 7, "level": 1}) == "7"
    sw.update(T, {"user_id": 7, "level": 2})
    keys = T.keys(T.partition("7"), prefix)
    assert r.smembers(keys.dirty) == {b"7"}
    assert orjson.loads(r.get(keys.value("7"))) == {"user_id": 7, "level": 2}
    assert r.ttl(keys.value("7")) == -1  # no expiry until durable
    assert sw.get(T, 7) == {"user_id": 7, "level": 2}
    assert sw.get(T, {"user_id": 7}) == {"user_id": 7, "level": 2}
    assert sw.get(T, 8) is None


def test_update_registers_the_table(r, prefix):
    Syncwd(r, prefix=prefix).update(T, {"user_id": 1})
    assert orjson.loads(r.hget(registry_key(prefix), "progress")) == {
        "partitions": 4,
        "key": ["user_id"],
        "ttl": 60,
        "version_column": None,
    }


def test_the_partition_count_cannot_change_under_dirty_data(r, prefix):
    Syncwd(r, prefix=prefix).update(T, {"user_id": 1})
    with pytest.raises(ConfigurationError, match="partition"):
        Syncwd(r, prefix=prefix).update(Table("progress", key="user_id", partitions=8), {"user_id": 1})


def test_update_many_spreads_over_partitions(r, prefix):
    sw = Syncwd(r, prefix=prefix)
    assert sw.update_many(T, ({"user_id": i, "n": i} for i in range(2500))) == 2500
    dirty = [r.scard(T.keys(p, prefix).dirty) for p in range(4)]
    assert sum(dirty) == 2500 and all(d > 400 for d in dirty)
    assert sw.get(T, 2499) == {"user_id": 2499, "n": 2499}


def test_update_many_survives_a_script_flush(private_redis):
    import redis

    r = redis.Redis.from_url(private_redis.url)
    sw = Syncwd(r, prefix="p")
    sw.update_many(T, [{"user_id": i} for i in range(10)])
    r.script_flush()
    sw.update_many(T, [{"user_id": i, "x": 1} for i in range(3000)])
    assert sw.get(T, 2999) == {"user_id": 2999, "x": 1}


def test_a_failed_call_is_sent_again_not_the_calls_before_it(r, prefix, monkeypatch):
    """update_many's pipeline: the third of its write calls fails (as NOSCRIPT
    or a MOVED slot would), and meanwhile another writer updates an id of the
    first call. The calls from the third on are sent again, in order; the first
    is not, so the other writer's newer value stays."""
    one = Table("one", key="user_id", partitions=1)
    sw = Syncwd(r, prefix=prefix)
    sw.update(one, {"user_id": 0})  # registered: update_many's calls are the writes only
    rows = [{"user_id": i, "v": 1} for i in range(600)]  # several calls of at most 128 records
    real_pipeline = r.pipeline

    class Failing:
        def __init__(self, *args, **kwargs):
            self.pipe = real_pipeline(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.pipe, name)

        def execute(self, raise_on_error=True):
            results = self.pipe.execute(raise_on_error=raise_on_error)
            assert len(results) >= 4
            r.set(one.keys(0, prefix).value("0"), b'{"user_id":0,"v":"other writer"}')
            results[2] = redis_lib.exceptions.ResponseError("injected")
            return results

    monkeypatch.setattr(r, "pipeline", Failing)
    sw.update_many(one, rows)
    monkeypatch.undo()
    assert sw.get(one, 0) == {"user_id": 0, "v": "other writer"}
    assert all(sw.get(one, i) == {"user_id": i, "v": 1} for i in range(1, 600))


def test_delete_writes_a_tombstone_with_the_key(r, prefix):
    sw = Syncwd(r, prefix=prefix)
    sw.update(T, {"user_id": 7, "level": 1})
    assert sw.delete(T, 7) == "7"
    keys = T.keys(T.partition("7"), prefix)
    assert r.get(keys.value("7")) == b'~{"user_id":7}'
    assert sw.get(T, 7) is None
    sw.delete(T, {"user_id": 8, "level": 3})
    assert r.get(T.keys(T.partition("8"), prefix).value("8")) == b'~{"user_id":8}'


def test_composite_keys(r, prefix):
    t = Table("scores", key=("user_id", "game"))
    sw = Syncwd(r, prefix=prefix)
    assert sw.update(t, {"user_id": 1, "game": "chess", "elo": 1500}) == '[1,"chess"]'
    assert sw.get(t, (1, "chess"))["elo"] == 1500
    with pytest.raises(ValueError, match="key"):
        sw.get(t, 1)


def test_bad_rows_are_refused_before_redis(r, prefix):
    sw = Syncwd(r, prefix=prefix)
    with pytest.raises(ValueError, match="key column 'user_id'"):
        sw.update(T, {"id": 1})
    with pytest.raises(ValueError, match="None"):
        sw.update(T, {"user_id": None})
    with pytest.raises(ValueError, match="JSON"):
        sw.update(T, {"user_id": 1, "x": object.__new__(type("Opaque", (), {"__slots__": ()}))})
    with pytest.raises(ValueError):
        sw.update(T, "not a row")
    assert not r.exists(registry_key(prefix)) or not any(r.scard(T.keys(p, prefix).dirty) for p in range(4))


@dataclasses.dataclass
class Progress:
    user_id: int
    level: int


class PydanticProgress(pydantic.BaseModel):
    user_id: int
    level: int


class Plain:
    def __init__(self, user_id, level):
        self.user_id = user_id
        self.level = level
        self._private = "not stored"


@pytest.mark.parametrize("row", [Progress(5, 9), PydanticProgress(user_id=5, level=9), Plain(5, 9)])
def test_models_are_rows_too(r, prefix, row):
    sw = Syncwd(r, prefix=prefix)
    sw.update(T, row)
    assert sw.get(T, 5) == {"user_id": 5, "level": 9}


class GoStyle:
    """A model declared the way the original syncwd's ModelI did."""

    def __init__(self, id, coins):
        self.id = id
        self.coins = coins

    def SourceTableName(self):
        return "wallet"


@dataclasses.dataclass
class Declared:
    __syncwd_table__ = Table("inventory", key="item_id", partitions=2)
    item_id: str
    count: int


def test_models_that_declare_their_table(r, prefix):
    sw = Syncwd(r, prefix=prefix)
    sw.update(GoStyle(3, 100))
    assert sw.get("wallet", 3) == {"id": 3, "coins": 100}
    sw.update(Declared("sword", 2))
    assert sw.get(Declared, "sword") == {"item_id": "sword", "count": 2}
    sw.delete(Declared("sword", 0))
    assert sw.get(Declared, "sword") is None
    with pytest.raises(ConfigurationError):
        sw.update({"id": 1})


def test_update_many_streams_with_bounded_memory(r, prefix):
    import tracemalloc

    sw = Syncwd(r, prefix=prefix)
    tracemalloc.start()
    try:
        assert sw.update_many(T, ({"user_id": i, "level": i % 9, "name": "x" * 40} for i in range(60_000))) == 60_000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 60k rows of ~70 bytes: holding them all would take well over 10 MB.
    assert peak < 8 * 1024 * 1024, peak
    assert sum(r.scard(T.keys(p, prefix).dirty) for p in range(4)) == 60_000
