"""Review of 43adb82: the typed-only statements (typed_whole / typed_all),
the stage of the typed columns alone (Merger._typed_only) and the key order
must mean exactly what the full statements over the UNION ALL source in
Redis's pop order mean. Each batch is merged twice, into
two identical tables: once as the commit merges it, once with both
shortcuts off (the statements, the stage and its order of dc4f93b); the tables,
the dead letters and the skipped records must agree."""

from __future__ import annotations

import os
import random
from typing import Any

import orjson
import psycopg
import pytest

from syncwd_fast import speedups
from syncwd_fast.connection import connect
from syncwd_fast.sinks.postgres import merge as merge_mod
from syncwd_fast.sinks.postgres.decode import Decoder
from syncwd_fast.sinks.postgres.merge import Merger
from syncwd_fast.sinks.postgres.schema import load_schema
from syncwd_fast.table import Table


def _mergers(dsn: str, table: str, version: str | None, pure: bool) -> tuple[Any, Decoder, Merger]:
    conn = connect(dsn)
    schema = load_schema(conn, Table(table, key="id", version_column=version))
    return conn, Decoder(schema, pure=pure), Merger(conn, schema, (0, 0), lambda: True)


class _Old:
    """The shortcuts off: _Run never typed, no typed-only stage, key_order the staged order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.real_run = merge_mod._Run.__init__
        self.real_order = merge_mod.key_order
        self.real_typed_only = Merger._typed_only

    def __enter__(self) -> None:
        real_run = self.real_run

        def run_init(s: Any, *args: Any, **kwargs: Any) -> None:
            kwargs["typed"] = False
            real_run(s, *args, **kwargs)

        self.monkeypatch.setattr(merge_mod._Run, "__init__", run_init)
        self.monkeypatch.setattr(merge_mod, "key_order", lambda items, staged, integer_key, pure=None: staged)
        self.monkeypatch.setattr(Merger, "_typed_only", lambda merger, batch: None)

    def __exit__(self, *exc: object) -> None:
        self.monkeypatch.setattr(merge_mod._Run, "__init__", self.real_run)
        self.monkeypatch.setattr(merge_mod, "key_order", self.real_order)
        self.monkeypatch.setattr(Merger, "_typed_only", self.real_typed_only)


ROUNDS = int(os.environ.get("R16_ROUNDS", "60"))
JSONB = float(os.environ.get("R16_JSONB", "0.05"))
SEED = int(os.environ.get("R16_SEED", "1616"))

DDL = """
CREATE TABLE {t} (
  id bigint PRIMARY KEY,
  v int CHECK (v IS NULL OR v <> 13),
  name text NOT NULL,
  email text UNIQUE DEFERRABLE INITIALLY IMMEDIATE,
  ver int,
  note text DEFAULT 'd',
  parent bigint REFERENCES {t} (id),
  p {s}.pair
)
"""


def _record(rng: random.Random, rid: int) -> bytes:
    r = rng.random()
    if r < 0.15:
        return b"~" + orjson.dumps({"id": rid})
    doc: dict[str, Any] = {"id": rid}
    if rng.random() < 0.7:
        doc["name"] = rng.choice(["a", "b", "c\n~x", "\u00e9"])
    if rng.random() < 0.6:
        doc["v"] = rng.choice([1, 2, 13, None, 7])
    if rng.random() < 0.3:
        doc["email"] = rng.choice(["x@", "y@", "z@", None])
    if rng.random() < 0.5:
        doc["ver"] = rng.choice([1, 2, 3, None])
    if rng.random() < 0.2:
        doc["note"] = rng.choice(["n", None])
    if rng.random() < 0.2:
        doc["parent"] = rng.choice([None, rng.randrange(-5, 25)])
    if rng.random() < JSONB:
        doc["p"] = rng.choice([None, {"a": 1, "b": "x"}])
    return orjson.dumps(doc)


def _shaped(rng: random.Random, key: str) -> bytes:
    """A value of ``key`` as _record draws them."""
    choices: dict[str, list[Any]] = {
        "name": ["a", "b", "c\n~x", "\u00e9", "t\tab\\"],
        "v": [1, 2, 13, None, 7],
        "email": ["x@", "y@", "z@", None],
        "ver": [1, 2, 3, None],
        "note": ["n", None],
        "parent": [None, *range(-5, 25)],
    }
    return orjson.dumps(rng.choice(choices[key]))


@pytest.mark.parametrize("pure", [False, True], ids=["c", "python"])
@pytest.mark.parametrize("version", [None, "ver"])
def test_typed_statements_and_key_order_agree_with_the_full_ones(
    db: psycopg.Connection[Any], dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch, pure: bool, version: str | None
) -> None:
    """A random history of batches (tombstones, partial records lacking the
    NOT NULL column, CHECK and UNIQUE failures, a version column, recreated
    rows) merged the new way and the old way must end the same."""
    if not pure and not speedups.available():
        pytest.skip("no C speedup")
    new_t, old_t = f"{schema}.t_new", f"{schema}.t_old"
    db.execute(f"CREATE TYPE {schema}.pair AS (a int, b text)")
    for t in (new_t, old_t):
        db.execute(DDL.format(t=t, s=schema))
    conn_n, dec_n, m_n = _mergers(dsn, new_t, version, pure)
    conn_o, dec_o, m_o = _mergers(dsn, old_t, version, pure)
    old = _Old(monkeypatch)
    rng = random.Random(SEED)
    mismatches = []
    try:
        for round_ in range(ROUNDS):
            n = rng.randrange(1, 12)
            ids = rng.sample(range(-5, 25), n)
            if rng.random() < 0.35:  # the common batch: one shape, no tombstone (the typed-only stage)
                shape = [k for k in ("name", "v", "email", "ver", "note", "parent") if rng.random() < 0.6]
                values = [orjson.dumps({"id": i, **{k: orjson.loads(_shaped(rng, k)) for k in shape}}) for i in ids]
            else:
                values = [_record(rng, i) for i in ids]
            rids = [str(i) for i in ids]
            recreated = {rid: "g1" for rid in rids if rng.random() < 0.1}
            before = db.execute(f"SELECT * FROM {new_t} ORDER BY id").fetchall()
            d_new = dec_n.decode(rids, values, recreated)
            r_new = m_n.merge(d_new)
            with old:
                d_old = dec_o.decode(rids, values, recreated)
                r_old = m_o.merge(d_old)
            got_new = (sorted(r_new.upserted), sorted(r_new.deleted), sorted(r_new.skipped), sorted(r_new.dead))
            dead_old = sorted((rid, reason.replace("t_old", "t_new")) for rid, reason in r_old.dead)  # its name
            got_old = (sorted(r_old.upserted), sorted(r_old.deleted), sorted(r_old.skipped), dead_old)
            rows_new = db.execute(f"SELECT * FROM {new_t} ORDER BY id").fetchall()
            rows_old = db.execute(f"SELECT * FROM {old_t} ORDER BY id").fetchall()
            if got_new != got_old or rows_new != rows_old:
                mismatches.append(
                    (round_, (before, recreated, list(zip(rids, values))), got_new, got_old, rows_new, rows_old)
                )
                break
    finally:
        conn_n.close()
        conn_o.close()
    assert not mismatches, mismatches[0]
