"""Review 15: adversarial tests of the MariaDB/MySQL sink against a real
MariaDB. Each test that fails documents a defect (see its docstring)."""

from __future__ import annotations

import time

from syncwd_fast import FastDrainer, Syncwd, Table

from .helpers import dead_of


def drain(r, m, prefix, **kw):
    kw.setdefault("retries", 1)
    kw.setdefault("retry_backoff", 0.05)
    return FastDrainer(r, m.dsn, prefix=prefix, **kw).drain()


def test_review15_a_json_number_into_a_bit_column_is_stored_as_its_ascii_code(r, m, prefix):
    """Found by review (fixed): {"flags": 1} into a BIT(8) column stores 0b00110001 (49, the
    ASCII code of the character '1'), silently: render.render sends every
    number as a quoted string literal, and MariaDB reads a string into BIT as
    its bytes. Neither the value (1) lands nor is the record dead-lettered.
    (schema.NUMERIC even lists "bit", but the kind is never used to send a
    number unquoted.) PostgreSQL's sink reads 1 into bit(n) as bits or refuses it."""
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, flags BIT(8))")
    t = Table("p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": 1, "flags": 1}, {"id": 2, "flags": 5}])
    report = drain(r, m, prefix)
    stored = dict(m.sql("SELECT id, CAST(flags AS UNSIGNED) FROM p"))
    dead = dead_of(r, t, prefix)
    # Either the number lands as the number, or the record is a dead letter: never another number.
    for rid, want in ((1, 1), (2, 5)):
        assert stored.get(rid) in (None, want) and (stored.get(rid) == want or str(rid) in dead), (
            report,
            stored,
            dead,
        )


def test_review15_one_record_bigger_than_max_allowed_packet_strands_its_partition(r, m, prefix):
    """Found by review (fixed): one record whose value exceeds the server's max_allowed_packet
    (16 MiB here; Redis holds values of up to 512 MiB, PostgreSQL's sink takes it)
    makes the stage INSERT fail with error 1153 / a lost link, which faults.TRANSIENT
    lists: the batch is retried and the drain stops with exit 3 every time, the
    other records of the partition never land and the big one is never dead-lettered.
    Promise broken: 'no single record can strand its partition'."""
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, doc LONGTEXT)")
    t = Table("p")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "doc": "small"} for i in range(1, 50)])
    sw.update(t, {"id": 1000, "doc": "x" * (17 << 20)})
    report = drain(r, m, prefix)
    assert m.count("p") == 49, report.aborted
    assert "1000" in dead_of(r, t, prefix), report.aborted
    assert report.exit_code == 1


def test_review15_two_records_that_fit_alone_but_not_together_still_land(r, m, prefix):
    """Found by review (fixed): Merger._stage cuts the stage INSERTs only once the rows gathered
    reach STAGE_BYTES (2 MiB), *after* adding the row that crosses it: a 2 MB record
    followed by a 15 MB record (each alone well under max_allowed_packet, 16 MiB)
    go out as one 17 MB statement; the server refuses it (1153, "transient"), and
    the partition is retried and stopped with exit 3 on every drain, forever."""
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, doc LONGTEXT)")
    t = Table("p")
    sw = Syncwd(r, prefix=prefix)
    sw.update(t, {"id": 1, "doc": "a" * 2_000_000})
    sw.update(t, {"id": 2, "doc": "b" * 15_000_000})
    report = drain(r, m, prefix, batch=2)
    assert report.exit_code == 0, report.aborted
    assert m.count("p") == 2


def test_review15_a_json_zero_into_a_year_column_lands_as_2000(r, m, prefix):
    """DEFECT (same root cause as BIT): YEAR takes the number 0 as 0000 but the
    string '0' as 2000; render.render sends every JSON number as a quoted string, so
    {"y": 0} lands as 2000."""
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, y YEAR)")
    t = Table("p")
    Syncwd(r, prefix=prefix).update(t, {"id": 1, "y": 0})
    drain(r, m, prefix)
    m.sql("CREATE TABLE q (id INT PRIMARY KEY, y YEAR)")
    m.sql("INSERT INTO q VALUES (1, 0)")  # what an INSERT of the number 0 stores
    assert m.rows("p") == m.rows("q")


def test_review15_killed_connection_mid_batch_is_retried_and_everything_lands(r, m, prefix, monkeypatch):
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, a INT)")
    t = Table("p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "a": i} for i in range(300)])
    from syncwd_fast.sinks.mysql import merge

    real = merge.Merger._stage
    killed = []

    def stage_then_get_killed(self, cur, *args):
        real(self, cur, *args)
        if not killed:
            killed.append(self.conn.thread_id())
            m.sql(f"KILL {killed[0]}")

    monkeypatch.setattr(merge.Merger, "_stage", stage_then_get_killed)
    report = drain(r, m, prefix, batch=100, retries=1)
    assert report.exit_code == 0, report.aborted
    assert m.count("p") == 300


def test_review15_killed_idle_connection_between_batches_is_retried(r, m, prefix, monkeypatch):
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, a INT)")
    t = Table("p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "a": i} for i in range(300)])
    from syncwd_fast.sinks.mysql import merge

    real = merge.Merger.merge
    calls = []

    def merge_and_kill(self, *args):
        out = real(self, *args)
        calls.append(1)
        if len(calls) == 1:
            m.sql(f"KILL {self.conn.thread_id()}")
            time.sleep(0.2)
        return out

    monkeypatch.setattr(merge.Merger, "merge", merge_and_kill)
    report = drain(r, m, prefix, batch=100, retries=1)
    assert report.exit_code == 0, report.aborted
    assert m.count("p") == 300


def test_review15_case_insensitive_string_key_two_spellings(r, m, prefix):
    m.sql("CREATE TABLE p (name VARCHAR(32) PRIMARY KEY, a INT)")
    t = Table("p", key="name")
    sw = Syncwd(r, prefix=prefix)
    sw.update(t, {"name": "Bob", "a": 1})
    drain(r, m, prefix)
    sw.update(t, {"name": "bob", "a": 2})
    report = drain(r, m, prefix)
    assert report.exit_code in (0, 1)
    assert m.count("p") == 1


def test_review15_version_guard_on_datetime_with_offsets(r, m, prefix):
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, v DATETIME(6), name TEXT)")
    t = Table("p", version_column="v")
    sw = Syncwd(r, prefix=prefix)
    sw.update(t, {"id": 1, "v": "2026-01-01T10:00:00+02:00", "name": "first"})  # 08:00 UTC
    drain(r, m, prefix)
    sw.update(t, {"id": 1, "v": "2026-01-01T09:00:00+02:00", "name": "older"})  # 07:00 UTC
    report = drain(r, m, prefix)
    assert report.skipped == 1
    sw.update(t, {"id": 1, "v": "2026-01-01T08:30:00Z", "name": "newer"})
    drain(r, m, prefix)
    assert m.sql("SELECT name FROM p")[0][0] == "newer"


def test_review15_other_database_table_recreate(r, m, prefix, mysql_db):
    dsn, conn = mysql_db
    other = "o_" + dsn.rsplit("/", 1)[1][2:]
    m.sql(f"CREATE DATABASE {other}")
    try:
        m.sql(f"CREATE TABLE {other}.p (id INT PRIMARY KEY, a TEXT, b TEXT DEFAULT 'dflt')")
        t = Table(f"{other}.p")
        sw = Syncwd(r, prefix=prefix)
        sw.update(t, {"id": 1, "a": "x", "b": "y"})
        drain(r, m, prefix)
        sw.delete(t, 1)
        sw.update(t, {"id": 1, "a": "new"})
        report = drain(r, m, prefix)
        assert report.exit_code == 0, report.aborted
        assert m.sql(f"SELECT * FROM {other}.p") == ((1, "new", "dflt"),)
    finally:
        m.sql(f"DROP DATABASE {other}")


def test_review15_a_stalled_drainer_holding_get_lock_blocks_its_successor_for_hours(r, m, prefix):
    """Found by review (fixed): a drainer that stalls (SIGSTOP, VM freeze, GC pause, a hung NFS
    read...) inside a batch's transaction holds the session-level GET_LOCK (and
    its row locks) until the server's wait_timeout (8 hours by default), because
    connection.connect sets no idle-transaction timeout (MariaDB's
    idle_transaction_timeout; PostgreSQL's sink sets idle_in_transaction_session_timeout
    to 2 x lease). Its lease runs out, a successor takes the partition over, and then
    fails GET_LOCK (1205) on every try: exit 3, drain after drain. README: 'The server
    ends a stalled drainer's open transaction soon after its lease is gone ... so a
    successor is never blocked for long' and MariaDB has 'the same promises'.
    Simulated with a session opened by the sink's own connect() (the same session
    settings a real drainer has) that took the partition's lock and stalled."""
    from syncwd_fast.sinks.mysql.connection import connect
    from syncwd_fast.sinks.mysql.merge import lock_name

    m.sql("CREATE TABLE p (id INT PRIMARY KEY, a INT)")
    t = Table("p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "a": i} for i in range(20)])
    hold = max(2 * 1.0, 5.0)  # what the sink uses for lease_seconds=1
    stalled = connect(m.dsn, statement_timeout_s=hold, lock_timeout_s=hold)
    try:
        stalled.begin()
        cur = stalled.cursor()
        cur.execute("INSERT INTO p (id, a) VALUES (1000, 1)")  # mid-batch: a row lock too
        cur.execute("SELECT GET_LOCK(%s, 0)", (lock_name(prefix, "p", 0),))
        assert cur.fetchone()[0] == 1
        r.set(t.keys(0, prefix).lease, "the-stalled-drainer", px=1000)  # its lease, no longer renewed
        time.sleep(1.2)
        # ... the stalled drainer never comes back. A successor, well after 2 x lease:
        report = drain(r, m, prefix, lease_seconds=1, retries=3, retry_backoff=0.05)
        assert report.exit_code == 0, report.aborted
        assert m.count("p") == 20
    finally:
        stalled.close()


def test_review15_a_trigger_refusing_one_row_with_its_own_error_number_strands_the_partition(r, m, prefix):
    """Found by review (fixed): a BEFORE INSERT/UPDATE trigger that refuses one row the usual way,
    SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 30001 (an application error number),
    fails the merge with error 30001, which faults.DATA does not list (only 1644,
    SIGNAL without MYSQL_ERRNO): _Run._try re-raises it, MySQLSink.blames_records
    says False, it is not transient either, so the drain stops ('unexpected
    OperationalError', exit 3) on every drain: one record strands its partition.
    PostgreSQL's sink sorts by SQLSTATE class, where 45000 is a data error
    (dead-lettered). Should: the record dead-lettered with the trigger's message,
    the rest lands (classify SQLSTATE class 45 / unknown application errnos as data)."""
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, a INT)")
    m.sql(
        "CREATE TRIGGER no_negatives BEFORE INSERT ON p FOR EACH ROW"
        " IF NEW.a < 0 THEN SIGNAL SQLSTATE '45000' SET MYSQL_ERRNO = 30001, MESSAGE_TEXT = 'a must not be negative';"
        " END IF"
    )
    t = Table("p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "a": -1 if i == 7 else i} for i in range(50)])
    report = drain(r, m, prefix)
    assert m.count("p") == 49, report.aborted
    assert "a must not be negative" in dead_of(r, t, prefix)["7"]["error"]


def test_review15_a_table_near_the_row_size_limit_cannot_be_staged(r, m, prefix):
    """Found by review (fixed): Merger.set_schema's stage copies every column's type and adds
    i INT, g INT, del TINYINT (9 bytes) and makes every column NULL-able; a valid
    target within a few bytes of MariaDB's 65,535-byte row size limit gives a
    stage that MariaDB refuses (1118 'Row size too large'), neither data nor
    transient: every drain stops with exit 3 and the table never drains."""
    m.sql("CREATE TABLE p (id INT NOT NULL PRIMARY KEY, doc VARCHAR(16382) CHARACTER SET utf8mb4 NOT NULL)")
    t = Table("p")
    Syncwd(r, prefix=prefix).update(t, {"id": 1, "doc": "x"})
    report = drain(r, m, prefix)
    assert report.exit_code == 0, report.aborted
    assert m.count("p") == 1


def test_review15_fk_restricted_delete_and_json_values(r, m, prefix):
    import orjson

    m.sql("CREATE TABLE parent (id INT PRIMARY KEY, doc JSON, n DECIMAL(30,10) UNSIGNED, big BIGINT UNSIGNED)")
    m.sql("CREATE TABLE child (id INT PRIMARY KEY, pid INT, FOREIGN KEY (pid) REFERENCES parent (id))")
    tp, tc = Table("parent"), Table("child")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(tp, [{"id": i} for i in range(1, 6)])
    drain(r, m, prefix)
    sw.update(tc, {"id": 1, "pid": 1})
    drain(r, m, prefix)
    sw.delete(tp, 1)
    keys = tp.keys(0, prefix)
    for rid, doc in {
        "2": b'{"id":2,"doc":"text","n":1.0000000001,"big":18446744073709551615}',
        "3": b'{"id":3,"doc":{"a":1,"a":2,"b":[1e300,-0,"\\u0000\\\\\'\\""]}}',
        "4": b'{"id":4,"big":18446744073709551616}',
        "5": b'{"id":5,"n":-1}',
    }.items():
        r.set(keys.value(rid), doc)
        r.sadd(keys.dirty, rid)
    assert drain(r, m, prefix).exit_code == 1
    dead = dead_of(r, tp, prefix)
    assert set(dead) == {"1", "4", "5"}, {k: v["error"] for k, v in dead.items()}
    assert "foreign key" in dead["1"]["error"]
    row2 = m.sql("SELECT doc, n, big FROM parent WHERE id = 2")[0]
    assert orjson.loads(row2[0]) == "text" and str(row2[1]) == "1.0000000001" and row2[2] == 2**64 - 1
    doc3 = m.sql("SELECT doc FROM parent WHERE id = 3")[0][0]
    assert doc3.startswith('{"a":2') and "1e300" in doc3, doc3


def test_review15_version_guard_with_another_unique_index_and_partial_rows(r, m, prefix):
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, v INT, email VARCHAR(32) UNIQUE, need INT NOT NULL, name TEXT)")
    t = Table("p", version_column="v")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": 1, "v": 5, "email": "a", "need": 1, "name": "five"}])
    drain(r, m, prefix)
    sw.update_many(t, [{"id": 1, "v": 4, "name": "older"}, {"id": 2, "v": 1, "name": "new lacks need"}])
    report = drain(r, m, prefix)
    assert (report.skipped, report.dead_lettered) == (1, 1)
    sw.update(t, {"id": 1, "v": None, "name": "null wins"})
    drain(r, m, prefix)
    assert m.rows("p") == ((1, None, "a", 1, "null wins"),)
