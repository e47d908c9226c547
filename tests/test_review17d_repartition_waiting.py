"""`status`'s waiting_since right after `tables repartition`: records moved
into a partition that was drained after they became dirty are older than
that partition's last run, so its last run's start bounds nothing."""

from __future__ import annotations

import time
from typing import Any

import syncwd_fast
from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.keys import partition_of
from syncwd_fast.repartition import repartition_table


def _id_in(partition: int, partitions: int) -> int:
    return next(i for i in range(1000) if partition_of(str(i), partitions) == partition)


def test_records_moved_in_are_never_dated_after_the_partitions_last_run(
    r: Any, db: Any, dsn: str, schema: str, prefix: str
) -> None:
    db.execute(f"CREATE TABLE {schema}.w (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.w", partitions=4)
    sw = Syncwd(r, prefix=prefix)
    old, fresh = _id_in(2, 4), _id_in(0, 4)
    assert partition_of(str(old), 2) == 0  # partition 2 of 4 goes to partition 0 of 2
    sw.update(t, {"id": old, "v": 1})
    written = int(time.time())  # the record is at least this old (whole seconds, as status counts)
    # Partition 2 is busy (a lease with no expiry: the drain skips it), so the record waits there.
    r.set(t.keys(2, prefix).lease, "someone else")
    time.sleep(1.1)
    sw.update(t, {"id": fresh, "v": 1})
    FastDrainer(r, dsn, prefix=prefix).drain()
    r.delete(t.keys(2, prefix).lease)
    before = syncwd_fast.status(r, prefix=prefix, partitions=True)["tables"][t.name]
    assert before["per_partition"][2]["dirty"] == 1 and before["per_partition"][2]["waiting_since"] is None
    assert before["per_partition"][0]["last_run"]["started_at"] > written

    repartition_table(r, t.name, 2, prefix=prefix)
    got = syncwd_fast.status(r, prefix=prefix, partitions=True)["tables"][t.name]
    assert got["per_partition"][0]["dirty"] == 1
    # The record waiting in partition 0 became dirty at `written`: no bound may say later.
    for since in (got["per_partition"][0]["waiting_since"], got["waiting_since"]):
        assert since is None or since <= written, (since, written)

    # Once a run that started after the move finished, its start bounds the partition again.
    time.sleep(1.1)
    FastDrainer(r, dsn, prefix=prefix).drain()
    sw.update(Table(t.name, partitions=2), {"id": old, "v": 2})
    after = syncwd_fast.status(r, prefix=prefix, partitions=True)["tables"][t.name]["per_partition"][0]
    assert after["dirty"] == 1 and after["waiting_since"] == after["last_run"]["started_at"] > written
