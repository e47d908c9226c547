"""Review: `tables remove` while a writer of the table is running. The docs
say a record it writes afterwards is kept and brings the table back ("its
registry entry within 5 s, or drain --discover finds it"). A writer that
writes once more and then stops must not leave its record where no plain
drain looks."""

from __future__ import annotations

from typing import Any

from syncwd_fast import FastDrainer, Syncwd, Table, remove_table

from .helpers import rows


def drain(r: Any, dsn: str, prefix: str) -> Any:
    with FastDrainer(r, dsn, prefix=prefix) as drainer:
        return drainer.drain()


def test_a_record_written_after_a_removal_is_drained_without_discover(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.a (id int PRIMARY KEY, v int)")
    db.execute(f"CREATE TABLE {schema}.b (id int PRIMARY KEY, v int)")
    a, b = Table(f"{schema}.a", partitions=2), Table(f"{schema}.b", partitions=2)
    app = Syncwd(r, prefix=prefix)  # a long-running application: its tables registered once
    app.update(a, {"id": 1, "v": 1})
    app.update(b, {"id": 1, "v": 1})
    assert drain(r, dsn, prefix).exit_code == 0
    removed = remove_table(r, b.name, prefix=prefix)  # the operator removes b, thinking it unused
    assert removed.registered
    app.update(b, {"id": 2, "v": 2})  # ...but the application writes it once more, then no more
    report = drain(r, dsn, prefix)  # a plain drain, as a schedule runs it
    assert report.exit_code == 0, report.to_dict()
    assert rows(db, b.name) == [(1, 1), (2, 2)], report.to_dict()
