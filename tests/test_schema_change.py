"""The target's columns change while a drain runs: the drain reads the schema
again when a batch carries keys that are not columns (a column was added) or
a statement names a column that is gone (a column was dropped)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from syncwd_fast import FastDrainer, Syncwd, Table


def after_the_first_batch(dsn: str, statement: str) -> tuple[list[int], Callable[[str, int, int], None]]:
    """An on_batch hook that runs ``statement`` (a migration) on another
    connection once the first batch is merged; and the batch sizes it saw."""
    batches: list[int] = []

    def hook(table: str, partition: int, n: int) -> None:
        batches.append(n)
        if len(batches) == 1:
            with psycopg.connect(dsn, autocommit=True) as other:
                other.execute(statement)

    return batches, hook


def test_a_column_added_mid_run_takes_the_values_of_later_batches(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.p")
    # The application already writes the new key; the migration lands mid-drain.
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i, "extra": f"x{i}"} for i in range(1000)])
    batches, migrate_after_the_first_batch = after_the_first_batch(dsn, f"ALTER TABLE {t.name} ADD COLUMN extra text")

    report = FastDrainer(r, dsn, prefix=prefix, batch=100, on_batch=migrate_after_the_first_batch).drain()
    assert report.exit_code == 0 and report.upserted == 1000
    # Every batch merged after the ALTER carried the new column's values; the
    # first one was merged while PostgreSQL had no such column.
    missing = db.execute(f"SELECT count(*) FROM {t.name} WHERE extra IS NULL").fetchone()[0]
    assert missing == batches[0] == 100
    wrong = db.execute(f"SELECT count(*) FROM {t.name} WHERE extra IS NOT NULL AND extra <> 'x' || id").fetchone()[0]
    assert wrong == 0


def test_strict_refuses_a_key_only_while_it_is_not_a_column(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i, "extra": "x"} for i in range(300)])
    batches, migrate_after_the_first_batch = after_the_first_batch(dsn, f"ALTER TABLE {t.name} ADD COLUMN extra text")

    drainer = FastDrainer(r, dsn, prefix=prefix, batch=100, strict=True, on_batch=migrate_after_the_first_batch)
    report = drainer.drain()
    # The first batch met the old schema: "extra" was no column, so --strict refused it.
    assert (report.upserted, report.dead_lettered) == (200, 100)
    assert db.execute(f"SELECT count(*) FROM {t.name} WHERE extra = 'x'").fetchone()[0] == 200


def test_a_column_dropped_mid_run(r, db, dsn, prefix, schema):
    db.execute(f"CREATE TABLE {schema}.p (id int PRIMARY KEY, v int, gone text)")
    t = Table(f"{schema}.p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "v": i, "gone": "g"} for i in range(1000)])
    batches, drop_after_the_first_batch = after_the_first_batch(dsn, f"ALTER TABLE {t.name} DROP COLUMN gone")

    report = FastDrainer(r, dsn, prefix=prefix, batch=100, on_batch=drop_after_the_first_batch).drain()
    assert report.exit_code == 0 and (report.upserted, report.dead_lettered) == (1000, 0)
    assert db.execute(f"SELECT count(*), sum(v) FROM {t.name}").fetchone() == (1000, sum(range(1000)))
