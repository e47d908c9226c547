"""Review of b6ff02b (Merger._typed_only): random common batches (one
shape, no tombstone) merged the new way and the full way (_typed_only
returning None, as before b6ff02b) into twin tables of many shapes
(triggers, domains, enums, arrays, json, partitions, identity, exclusion and
deferrable constraints, RLS, a trigger that skips rows); the results (rows,
dead letters and their reasons, skipped, unchanged, the exception raised)
must agree."""

from __future__ import annotations

import os
import random
from typing import Any

import orjson
import psycopg
import pytest

from syncwd_fast import speedups
from syncwd_fast.connection import connect
from syncwd_fast.sinks.postgres.decode import Decoder
from syncwd_fast.sinks.postgres.merge import Merger
from syncwd_fast.sinks.postgres.schema import load_schema
from syncwd_fast.table import Table

ROUNDS = int(os.environ.get("R16C_ROUNDS", "40"))

PRE = """
CREATE DOMAIN {s}.small AS int CHECK (VALUE < 1000);
CREATE TYPE {s}.mood AS ENUM ('sad', 'ok', 'happy');
CREATE FUNCTION {s}.before_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.name = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF;
  IF NEW.name = 'skip' THEN RETURN NULL; END IF;
  IF NEW.v IS NOT NULL THEN NEW.v := NEW.v * 2; END IF;
  RETURN NEW;
END $$;
CREATE FUNCTION {s}.after_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.v = 1332 THEN RAISE EXCEPTION 'after refused %', NEW.id USING ERRCODE = '23514'; END IF;
  EXECUTE format('INSERT INTO %s (tid, v) VALUES ($1, $2)', TG_ARGV[0]) USING NEW.id, NEW.v;
  RETURN NULL;
END $$;
CREATE FUNCTION {s}.skip_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.name = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF;
  IF NEW.name = 'skip' THEN RETURN NULL; END IF;
  RETURN NEW;
END $$;
CREATE FUNCTION {s}.after_stmt() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT FROM new_rows WHERE name = 'stmt') THEN RAISE EXCEPTION 'statement refused'; END IF;
  RETURN NULL;
END $$;
"""

SHAPES = {
    "triggers": """
      CREATE TABLE {t}_audit (tid bigint, v int);
      CREATE TABLE {t} (id bigint PRIMARY KEY, v int, name text, w {s}.small DEFAULT 5);
      CREATE TRIGGER b BEFORE INSERT OR UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION {s}.before_row();
      CREATE TRIGGER a AFTER INSERT OR UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION {s}.after_row('{t}_audit');
      CREATE TRIGGER st AFTER INSERT ON {t} REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION {s}.after_stmt();
    """,
    "types": """
      CREATE TABLE {t} (id bigint PRIMARY KEY, m {s}.mood, a int[], j jsonb, n numeric(6,2), at timestamptz,
        name text, w {s}.small, b boolean DEFAULT true);
    """,
    "partitioned": """
      CREATE TABLE {t} (id bigint PRIMARY KEY, v int CHECK (v <> 13), name text) PARTITION BY RANGE (id);
      CREATE TABLE {t}_lo PARTITION OF {t} FOR VALUES FROM (MINVALUE) TO (10);
      CREATE TABLE {t}_hi PARTITION OF {t} FOR VALUES FROM (10) TO (20);
    """,
    "identity": """
      CREATE TABLE {t} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int CHECK (v <> 13), name text);
    """,
    "constraints": """
      CREATE TABLE {t} (id bigint PRIMARY KEY, v int, name text UNIQUE DEFERRABLE INITIALLY DEFERRED,
        r int4range, EXCLUDE USING gist (r WITH &&));
      CREATE UNIQUE INDEX ON {t} (v) WHERE v > 100;
    """,
    "rls": """
      CREATE TABLE {t} (id bigint PRIMARY KEY, v int, name text);
      ALTER TABLE {t} ENABLE ROW LEVEL SECURITY; ALTER TABLE {t} FORCE ROW LEVEL SECURITY;
      CREATE POLICY p ON {t} USING (true) WITH CHECK (v IS DISTINCT FROM 99);
    """,
    "keys": """
      CREATE TABLE {t} (id bigint PRIMARY KEY);
      CREATE FUNCTION {t}_f() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.id % 3 = 0 THEN RETURN NULL; END IF; IF NEW.id = 17 THEN RAISE EXCEPTION 'no 17'; END IF;
      RETURN NEW; END $$;
      CREATE TRIGGER b BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION {t}_f();
    """,
    "skipping": """
      CREATE TABLE {t} (id bigint PRIMARY KEY, name text);
      CREATE TRIGGER b BEFORE INSERT OR UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION {s}.skip_row();
    """,
}

VALUES: dict[str, list[Any]] = {
    "v": [1, 2, 13, None, 7, 666, 99, 150, 151],
    "name": ["a", "b", "boom", "skip", "stmt", "t\tab\\x\n", "\u00e9\u4e2d", None],
    "w": [1, 999, 1000, None],
    "m": ["sad", "happy", "angry", None],
    "a": [[1, 2], [], None, [None, 3]],
    "j": [{"x": 1}, [1, "a"], "s", None],
    "n": [1.25, 1234.5, 99999.99, 1.005, None],
    "at": ["2026-01-01T00:00:00Z", "2026-06-01 12:00:00+05:30", "not a date", None],
    "b": [True, False, None],
    "r": ["[1,5)", "[3,8)", "[10,12)", None],
}
COLUMNS = {
    "triggers": ["v", "name", "w"],
    "types": ["m", "a", "j", "n", "at", "name", "w", "b"],
    "partitioned": ["v", "name"],
    "identity": ["v", "name"],
    "constraints": ["v", "name", "r"],
    "rls": ["v", "name"],
    "skipping": ["name"],
    "keys": [],
}


def _mergers(dsn: str, table: str, pure: bool) -> tuple[Any, Decoder, Merger]:
    conn = connect(dsn)
    schema = load_schema(conn, Table(table, key="id"))
    return conn, Decoder(schema, pure=pure), Merger(conn, schema, (0, 0), lambda: True)


def _outcome(merger: Merger, decoder: Decoder, rids: list[str], values: list[bytes], name: str) -> Any:
    decoded = decoder.decode(rids, values)
    try:
        r = merger.merge(decoded)
    except Exception as exc:  # noqa: BLE001
        merger.conn.rollback()
        return ("raised", type(exc).__name__)
    dead = sorted(
        (rid, reason.replace(name, "T").replace(name.split(".")[-1], "T")) for rid, reason in [*decoded.dead, *r.dead]
    )
    return (sorted(r.upserted), sorted(r.skipped), dead, r.unchanged)


@pytest.mark.parametrize("pure", [False, True], ids=["c", "python"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_common_batches_agree(
    db: psycopg.Connection[Any], dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch, pure: bool, shape: str
) -> None:
    if not pure and not speedups.available():
        pytest.skip("no C speedup")
    monkeypatch.setattr(speedups, "ACTIVE", "python" if pure else "c")
    db.execute(PRE.format(s=schema))
    new_t, old_t = f"{schema}.n_{shape}", f"{schema}.o_{shape}"
    for t in (new_t, old_t):
        db.execute(SHAPES[shape].format(t=t, s=schema))
    conn_n, dec_n, m_n = _mergers(dsn, new_t, pure)
    conn_o, dec_o, m_o = _mergers(dsn, old_t, pure)
    rng = random.Random(hash((shape, pure)) & 0xFFFF)
    typed_only_used = 0
    real = Merger._typed_only

    def counting(merger: Merger, batch: Any) -> Any:
        nonlocal typed_only_used
        run = real(merger, batch)
        typed_only_used += run is not None
        return run

    try:
        for round_ in range(ROUNDS):
            ids = rng.sample(range(0, 20), rng.randrange(1, 10))
            cols = [c for c in COLUMNS[shape] if rng.random() < 0.6]
            bad = rng.random() < 0.5
            docs = []
            for i in ids:
                doc: dict[str, Any] = {"id": i}
                for c in cols:
                    pool = VALUES[c]
                    doc[c] = rng.choice(pool if bad else pool[:2])
                docs.append(orjson.dumps(doc))
            rids = [str(i) for i in ids]
            monkeypatch.setattr(Merger, "_typed_only", counting)
            got_new = _outcome(m_n, dec_n, rids, docs, new_t)
            monkeypatch.setattr(Merger, "_typed_only", lambda merger, batch: None)
            got_old = _outcome(m_o, dec_o, rids, docs, old_t)
            rows_new = db.execute(f"SELECT * FROM {new_t} ORDER BY id").fetchall()
            rows_old = db.execute(f"SELECT * FROM {old_t} ORDER BY id").fetchall()
            extra = []
            if shape == "triggers":
                extra = [db.execute(f"SELECT * FROM {t}_audit ORDER BY 1, 2").fetchall() for t in (new_t, old_t)]
            assert (got_new, rows_new) == (got_old, rows_old), (round_, list(zip(rids, docs)))
            if extra:
                assert extra[0] == extra[1], (round_, list(zip(rids, docs)))
    finally:
        conn_n.close()
        conn_o.close()
    print(shape, "typed-only used", typed_only_used, "of", ROUNDS)
