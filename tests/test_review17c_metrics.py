"""Review: Prometheus metrics (syncwd_fast.metrics) against real servers:
gauges of a table that is gone, a scrape that never ends."""

from __future__ import annotations

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.metrics import DrainMetrics
from syncwd_fast.tables_admin import remove_table


def test_the_gauges_of_a_removed_table_go_away(r, db, schema, dsn, prefix):
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY, v int CHECK (v >= 0))")
    db.execute(f"CREATE TABLE {schema}.b (id int PRIMARY KEY, v int)")
    a, b = Table(f"{schema}.a", partitions=2), Table(f"{schema}.b")
    w = Syncwd(r, prefix=prefix)
    w.update_many(a, [{"id": i, "v": -1 if i < 5 else i} for i in range(50)])  # 5 dead letters
    w.update_many(b, [{"id": i, "v": i} for i in range(20)])
    metrics = DrainMetrics(r, prefix)
    drainer = FastDrainer(r, dsn, prefix=prefix, observer=metrics)
    assert drainer.drain().exit_code == 1
    get = metrics.registry.get_sample_value
    assert get("syncwd_dead_letters", {"table": a.name}) == 5
    assert get("syncwd_backlog", {"table": a.name}) == 0
    # The table is removed (its dead letters dropped): its gauges no longer say 5 dead letters wait.
    assert remove_table(r, a.name, prefix=prefix, force=True).dead == 5
    w.update(b, {"id": 99, "v": 99})
    assert drainer.drain().exit_code == 0
    assert get("syncwd_dead_letters", {"table": a.name}) is None
    assert get("syncwd_backlog", {"table": a.name}) is None
    assert get("syncwd_backlog", {"table": b.name}) == 0 and get("syncwd_dead_letters", {"table": b.name}) == 0
    # Its counters stay: they count what this process did.
    assert get("syncwd_rows_upserted_total", {"table": a.name}) == 45
