"""Review: `tables repartition` with awkward ids: ids with ':', braces,
unicode, very long ones, and an id that is not UTF-8 (written by another
client). Every record lands afterwards; none is left where no drain looks."""

from __future__ import annotations

from typing import Any

import pytest

from syncwd_fast import FastDrainer, Syncwd, Table, repartition_table, show_table
from syncwd_fast.keys import PartitionKeys

from .helpers import rows

AWKWARD = ["a:b", "{x}", "}:meta", "{t:1}:v:9", "é漢字🙂", "x" * 5000, "  ", "*?[", "back\\slash", "new\nline"]


def drain(r: Any, dsn: str, prefix: str) -> Any:
    with FastDrainer(r, dsn, prefix=prefix, workers=1) as drainer:
        return drainer.drain()


@pytest.mark.parametrize("counts", [(3, 5), (5, 2)])
def test_awkward_ids_move_and_land(r, db, dsn, prefix, schema, counts):
    before, after = counts
    db.execute(f"CREATE TABLE {schema}.things (id text PRIMARY KEY, v int)")
    old = Table(f"{schema}.things", partitions=before)
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(old, [{"id": rid, "v": i} for i, rid in enumerate(AWKWARD)])
    done = repartition_table(r, old.name, after, prefix=prefix)
    assert done.missing == 0
    report = drain(r, dsn, prefix)
    assert report.exit_code == 0, report.to_dict()
    assert dict(rows(db, old.name)) == {rid: i for i, rid in enumerate(AWKWARD)}
    new = Table(old.name, partitions=after)
    assert all(Syncwd(r, prefix=prefix).get(new, rid) == {"id": rid, "v": i} for i, rid in enumerate(AWKWARD))


def test_an_id_that_is_not_utf8_does_not_stop_the_repartition(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.things (id text PRIMARY KEY, v int)")
    old = Table(f"{schema}.things", partitions=3)
    Syncwd(r, prefix=prefix).update_many(old, [{"id": str(i), "v": i} for i in range(20)])
    raw = b"bad\xff\xfeid"
    k = PartitionKeys(prefix, old.name, 1)
    r.set(k.value_prefix.encode() + raw, b'{"id":"bad","v":1}')  # another client's write
    r.sadd(k.dirty, raw)
    done = repartition_table(r, old.name, 2, prefix=prefix)
    assert done.after == 2
    report = drain(r, dsn, prefix)  # the drain runs: the bad id is its business (dead-lettered or landed)
    assert not report.tables[old.name].error, report.to_dict()
    assert len(rows(db, old.name)) >= 20
    assert all(p["dirty"] == 0 for p in show_table(r, old.name, prefix=prefix)["partitions"])
