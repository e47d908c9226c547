"""Review 15c: adversarial tests of the MariaDB/MySQL sink against a real
MariaDB. Each failing test documents a defect (see its docstring)."""

from __future__ import annotations

from syncwd_fast import FastDrainer, Syncwd, Table

from .helpers import dead_of


def drain(r, m, prefix, **kw):
    kw.setdefault("retries", 1)
    kw.setdefault("retry_backoff", 0.05)
    return FastDrainer(r, m.dsn, prefix=prefix, **kw).drain()


def test_review15c_composite_key_delete_and_recreate(r, m, prefix):
    m.sql(
        "CREATE TABLE comp (game VARCHAR(32) NOT NULL, uid INT NOT NULL, level INT NOT NULL DEFAULT 1,"
        " note VARCHAR(20) NULL DEFAULT 'fresh', PRIMARY KEY (game, uid))"
    )
    t = Table("comp", key=["game", "uid"], partitions=2)
    w = Syncwd(r, prefix=prefix)
    w.update_many(t, [{"game": g, "uid": i, "level": i + 5, "note": "x"} for g in ("chess", "go") for i in range(50)])
    assert drain(r, m, prefix).exit_code == 0
    for i in range(0, 50, 2):
        w.delete(t, {"game": "chess", "uid": i})
    for i in range(0, 50, 4):
        w.update(t, {"game": "chess", "uid": i, "level": 99})  # a new row after the delete: note takes its default
    rep = drain(r, m, prefix)
    assert rep.exit_code == 0, rep
    rows = dict(((g, u), (lv, n)) for g, u, lv, n in m.sql("SELECT game, uid, level, note FROM comp"))
    assert len(rows) == 100 - 25 + 13
    assert rows[("chess", 0)] == (99, "fresh")
    assert rows[("chess", 1)] == (6, "x")
    assert ("chess", 2) not in rows
    assert rows[("go", 2)] == (7, "x")


def test_review15c_workers_4_many_partitions(r, m, prefix):
    m.sql("CREATE TABLE w4 (id INT PRIMARY KEY, v INT NOT NULL, s VARCHAR(8) NULL)")
    t = Table("w4", key="id", partitions=8)
    w = Syncwd(r, prefix=prefix)
    w.update_many(t, [{"id": i, "v": i} for i in range(4000)])
    w.update_many(t, [{"id": i, "v": i, "s": "toolongvalue" if i % 500 == 0 else "ok"} for i in range(4000)])
    rep = drain(r, m, prefix, workers=4, batch=300)
    assert rep.aborted is None, rep.aborted
    assert rep.dead_lettered == 8
    assert m.sql("SELECT COUNT(*), SUM(v) FROM w4")[0] == (3992, sum(i for i in range(4000) if i % 500))
    assert m.sql("SELECT COUNT(*) FROM w4 WHERE s = 'ok'")[0][0] == 4000 - 8


def test_review15c_column_dropped_mid_run(r, m, prefix):
    m.sql("CREATE TABLE dropc (id INT PRIMARY KEY, a INT NULL, b INT NULL)")
    t = Table("dropc", key="id", partitions=1)
    w = Syncwd(r, prefix=prefix)
    w.update_many(t, [{"id": i, "a": i, "b": i} for i in range(100)])
    assert drain(r, m, prefix).exit_code == 0
    m.sql("ALTER TABLE dropc DROP COLUMN b")
    w.update_many(t, [{"id": i, "a": i + 1, "b": 0} for i in range(100)])
    rep = drain(r, m, prefix)
    assert rep.exit_code == 0, (rep.aborted, rep.tables)
    assert m.sql("SELECT SUM(a) FROM dropc")[0][0] == sum(range(1, 101))


def test_review15c_column_added_mid_run_strict(r, m, prefix):
    m.sql("CREATE TABLE addc (id INT PRIMARY KEY, a INT NULL)")
    t = Table("addc", key="id", partitions=1)
    w = Syncwd(r, prefix=prefix)
    w.update_many(t, [{"id": i, "a": i} for i in range(10)])
    assert drain(r, m, prefix, strict=True).exit_code == 0
    m.sql("ALTER TABLE addc ADD COLUMN c VARCHAR(10) NULL")
    w.update_many(t, [{"id": i, "c": "z"} for i in range(10)])
    w.update(t, {"id": 50, "a": 1, "nope": 2})
    rep = drain(r, m, prefix, strict=True)
    assert rep.exit_code == 1, (rep.aborted, rep.tables)
    assert set(dead_of(r, t, prefix)) == {"50"}
    assert m.sql("SELECT COUNT(*) FROM addc WHERE c = 'z'")[0][0] == 10


def test_review15c_table_dropped_mid_run(r, m, prefix):
    m.sql("CREATE TABLE gone (id INT PRIMARY KEY, a INT NULL)")
    m.sql("CREATE TABLE stays (id INT PRIMARY KEY, a INT NULL)")
    t, s = Table("gone", key="id", partitions=1), Table("stays", key="id", partitions=1)
    w = Syncwd(r, prefix=prefix)
    w.update_many(t, [{"id": i, "a": i} for i in range(10)])
    assert drain(r, m, prefix).exit_code == 0
    m.sql("DROP TABLE gone")
    w.update_many(t, [{"id": i, "a": 0} for i in range(10)])
    w.update_many(s, [{"id": i, "a": 0} for i in range(10)])
    rep = drain(r, m, prefix)
    assert rep.exit_code == 1, (rep.aborted, rep.tables)
    assert rep.tables["gone"].error
    assert m.sql("SELECT COUNT(*) FROM stays")[0][0] == 10


def test_review15c_key_types(r, m, prefix):
    m.sql("CREATE TABLE kd (k DECIMAL(10,2) PRIMARY KEY, v INT NULL)")
    m.sql("CREATE TABLE kt (k DATETIME PRIMARY KEY, v INT NULL)")
    m.sql("CREATE TABLE kb (k VARBINARY(16) PRIMARY KEY, v INT NULL)")
    m.sql("CREATE TABLE kc (k CHAR(8) PRIMARY KEY, v INT NULL)")
    w = Syncwd(r, prefix=prefix)
    tabs = {n: Table(n, key="k", partitions=1) for n in ("kd", "kt", "kb", "kc")}
    w.update_many(tabs["kd"], [{"k": "1.5", "v": 1}, {"k": "2.25", "v": 2}])
    w.update_many(tabs["kt"], [{"k": "2024-01-01T10:00:00Z", "v": 1}, {"k": "2024-01-02 00:00:00", "v": 2}])
    w.update_many(tabs["kb"], [{"k": "ab ", "v": 1}, {"k": "ab", "v": 2}])
    w.update_many(tabs["kc"], [{"k": "x", "v": 1}])
    assert drain(r, m, prefix).exit_code == 0
    w.update_many(tabs["kd"], [{"k": "1.5", "v": 10}])
    w.delete(tabs["kd"], {"k": "2.25"})
    w.update_many(tabs["kt"], [{"k": "2024-01-01T10:00:00Z", "v": 10}])
    w.delete(tabs["kt"], {"k": "2024-01-02 00:00:00"})
    w.update_many(tabs["kb"], [{"k": "ab ", "v": 10}])
    w.delete(tabs["kb"], {"k": "ab"})
    w.update_many(tabs["kc"], [{"k": "x", "v": 10}])
    rep = drain(r, m, prefix)
    assert rep.exit_code == 0, rep
    assert m.sql("SELECT k, v FROM kd") == ((__import__("decimal").Decimal("1.50"), 10),)
    assert [v for _, v in m.sql("SELECT k, v FROM kt")] == [10]
    assert m.sql("SELECT k, v FROM kb") == ((b"ab ", 10),)
    assert m.sql("SELECT k, v FROM kc") == (("x", 10),)


def test_review15c_enum_set(r, m, prefix):
    m.sql("CREATE TABLE es (id INT PRIMARY KEY, e ENUM('red','green') NULL, s SET('a','b','c') NULL)")
    t = Table("es", key="id", partitions=1)
    w = Syncwd(r, prefix=prefix)
    w.update_many(t, [{"id": 1, "e": "green", "s": "a,c"}, {"id": 2, "e": "blue"}, {"id": 3, "s": "z"}])
    rep = drain(r, m, prefix)
    assert rep.exit_code == 1
    assert set(dead_of(r, t, prefix)) == {"2", "3"}
    assert m.sql("SELECT * FROM es") == ((1, "green", "a,c"),)


def test_review15c_version_column_varchar_and_datetime(r, m, prefix):
    m.sql("CREATE TABLE vv (id INT PRIMARY KEY, ver VARCHAR(10) NULL, a INT NULL)")
    m.sql("CREATE TABLE vd (id INT PRIMARY KEY, ver DATETIME NULL, a INT NULL, b INT NOT NULL)")
    tv = Table("vv", key="id", partitions=1, version_column="ver")
    td = Table("vd", key="id", partitions=1, version_column="ver")
    w = Syncwd(r, prefix=prefix)
    w.update_many(tv, [{"id": 1, "ver": "b", "a": 1}, {"id": 2, "ver": "b", "a": 1}])
    w.update_many(td, [{"id": 1, "ver": "2024-01-02T00:00:00Z", "a": 1, "b": 1}])
    assert drain(r, m, prefix).exit_code == 0
    w.update_many(tv, [{"id": 1, "ver": "a", "a": 2}, {"id": 2, "ver": "c", "a": 2}])
    w.update_many(td, [{"id": 1, "ver": "2024-01-01T23:00:00-02:00", "a": 2}])  # 01:00Z on the 2nd: newer
    rep = drain(r, m, prefix)
    assert rep.exit_code == 0, rep.summary()
    assert m.sql("SELECT id, ver, a FROM vv ORDER BY id") == ((1, "b", 1), (2, "c", 2))
    assert m.sql("SELECT a, b FROM vd") == ((2, 1),)
    assert rep.skipped == 1


def test_review15c_nullable_unique_key_with_autoincrement_pk(r, m, prefix):
    m.sql(
        "CREATE TABLE ue (id INT AUTO_INCREMENT PRIMARY KEY, email VARCHAR(64) NULL, name VARCHAR(20) NOT NULL,"
        " lvl INT NOT NULL DEFAULT 3, up VARCHAR(64) AS (UPPER(email)) STORED, UNIQUE KEY (email))"
    )
    m.sql("INSERT INTO ue (email, name) VALUES (NULL, 'anon')")
    t = Table("ue", key="email", partitions=1)
    w = Syncwd(r, prefix=prefix)
    w.update_many(t, [{"email": f"u{i}@x", "name": "n", "lvl": 9, "up": "ignored"} for i in range(5)])
    assert drain(r, m, prefix).exit_code == 0
    w.delete(t, {"email": "u1@x"})
    w.update(t, {"email": "u1@x", "name": "again"})
    w.update(t, {"email": "u2@x", "lvl": 1})
    w.update(t, {"email": "new@x", "lvl": 1})  # a new row lacking name: dead-lettered
    rep = drain(r, m, prefix)
    assert rep.exit_code == 1, rep.summary()
    assert set(dead_of(r, t, prefix)) == {"new@x"}
    got = {e: (n, lv, up) for e, n, lv, up in m.sql("SELECT email, name, lvl, up FROM ue")}
    assert got["u1@x"] == ("again", 3, "U1@X")
    assert got["u2@x"] == ("n", 1, "U2@X")
    assert got[None] == ("anon", 3, None)
    assert len(got) == 6
