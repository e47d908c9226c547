"""Review of b6ff02b (Merger._typed_only): a batch refused on the typed
stage has already drawn sequence values (nextval is not rolled back) before
the full path merges it again, so a serial/identity column the records do
not carry gets other values than the full path alone gives. Accepted, and
documented (docs/architecture.md 5.5): sequences were never gap-free (the
full path's own failed statements draw values too), and a batch is refused
only when it holds bad records. What must hold: every other column and the
dead letters are the full path's, and the drawn values are distinct and
increasing in key order as the full path's."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
import pytest

from syncwd_fast import speedups
from syncwd_fast.sinks.postgres.merge import Merger

from .helpers import merger_for


@pytest.mark.parametrize("impl", ["c", "python"])
def test_a_refused_batch_draws_the_same_sequence_values_as_the_full_path(
    impl: str, db: psycopg.Connection[Any], dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if impl == "c" and not speedups.available():
        pytest.skip("no C speedup")
    monkeypatch.setattr(speedups, "ACTIVE", impl)
    new_t, old_t = f"{schema}.seq_new", f"{schema}.seq_old"
    for t in (new_t, old_t):
        db.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, v int CHECK (v <> 13), n bigserial)")
    batch = [(str(k), orjson.dumps({"id": k, "v": 13 if k == 4 else k})) for k in (1, 2, 3, 4)]

    def merge(table: str) -> Any:
        conn, decoder, merger = merger_for(dsn, table, pure=impl == "python")
        try:
            return merger.merge(decoder.decode([rid for rid, _ in batch], [doc for _, doc in batch]))
        finally:
            conn.close()

    r_new = merge(new_t)
    with monkeypatch.context() as m:
        m.setattr(Merger, "_typed_only", lambda merger, batch: None)
        r_old = merge(old_t)
    assert [rid for rid, _ in r_new.dead] == [rid for rid, _ in r_old.dead] == ["4"]
    old_rows = db.execute(f"SELECT id, v, n FROM {old_t} ORDER BY id").fetchall()
    new_rows = db.execute(f"SELECT id, v, n FROM {new_t} ORDER BY id").fetchall()
    assert [row[:2] for row in new_rows] == [row[:2] for row in old_rows] == [(1, 1), (2, 2), (3, 3)]
    drawn = [row[2] for row in new_rows]
    assert drawn == sorted(set(drawn)) and [row[2] for row in old_rows] == [5, 6, 7]
