"""Review 15b: adversarial tests of the MariaDB/MySQL sink (render.py,
merge.py) against a real MariaDB. Each failing test documents a defect."""

from __future__ import annotations

from syncwd_fast import FastDrainer, Syncwd, Table
from syncwd_fast.sinks.base import Batch
from syncwd_fast.sinks.mysql import MySQLSink

from .helpers import dead_entries


def drain(r, m, prefix, **kw):
    kw.setdefault("retries", 1)
    kw.setdefault("retry_backoff", 0.05)
    return FastDrainer(r, m.dsn, prefix=prefix, **kw).drain()


def raw_write(r, t, prefix, record_id, value):
    keys = t.keys(0, prefix)
    r.set(keys.value(record_id), value)
    r.sadd(keys.dirty, record_id)


def sink_write(m, table, docs):
    """The sink's write of one batch, records in this order (as the
    differential test drives it)."""
    sink = MySQLSink(m.dsn)
    try:
        sink.open()
        t = Table(table, key="id")
        sink.check(t)
        batch = Batch(t, 0, "t", ids=[i for i, _ in docs], values=[v for _, v in docs])
        sink.prepare(batch)
        return sink.write(batch)
    finally:
        sink.close()


def test_review15b_a_value_mentioning_at_row_dead_letters_the_innocent_records_before_it(m):
    """Found by review (fixed): one record whose refused value contains the text " at row 1"
    (a user's string into an INT column) dead-letters EVERY record staged
    before it in the same statement, each with that record's error message.
    merge.Merger._stage_rows finds the culprit with _AT_ROW.search() on the
    server's message, "Incorrect integer value: 'oops at row 1' for column
    ... at row 3": the FIRST match is inside the quoted value, so row 1 is
    dropped as the culprit; the statement is sent again, row 1 is again
    blamed, and so on until the bad record is row 1. With a 5,000 record
    batch that is up to 4,999 good records dead-lettered (and as many
    statements of up to 2 MiB re-sent). README: "a value the server refuses
    is dead-lettered with its message while the rest of the batch lands".
    Fix: take the last " at row N" of the message (anchor the regex at the
    end, or use the last match)."""
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, i INT)")
    docs = [(str(n), f'{{"id":{n},"i":{n}}}'.encode()) for n in range(1, 30)]
    docs.append(("99", b'{"id":99,"i":"oops at row 1"}'))
    written = sink_write(m, "p", docs)
    assert set(written.rejected) == {"99"}, sorted(written.rejected, key=int)[:10]
    assert m.sql("SELECT COUNT(*) FROM p")[0][0] == 29


def test_review15b_a_repeated_key_whose_last_value_is_an_object_lands_the_first_value(r, m, prefix):
    """Found by review (fixed): README/render.py: "of a key repeated in one document the last
    counts, as in PostgreSQL". For {"id":1, "t":"first", "t":{"a":1}} into a
    TEXT column the sink stores '"first"' -- the FIRST value, and with JSON
    quotes around it. render._texts sees the last value (a dict) and renders
    it as FromDocument('$."t"'), i.e. JSON_COMPACT(JSON_EXTRACT(doc, '$."t"'))
    on the whole stored document, and MariaDB's JSON_EXTRACT takes the first
    of repeated keys. An older, different value lands silently. Fix: for an
    object/array into a non-JSON column, extract from a document that has the
    key once (e.g. build a one-member document {"t": <last value's text>}),
    or render the compact JSON in Python as for JSON columns."""
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, t TEXT)")
    t = Table("p")
    Syncwd(r, prefix=prefix).update(t, {"id": 2, "t": "plain"})
    raw_write(r, t, prefix, "1", b'{"id": 1, "t": "first", "t": {"a": 1}}')
    raw_write(r, t, prefix, "3", b'{"id": 3, "t": {"old": 1}, "t": [2]}')
    report = drain(r, m, prefix)
    assert report.exit_code == 0, report.aborted
    assert dict(m.sql("SELECT id, t FROM p")) == {1: '{"a":1}', 2: "plain", 3: "[2]"}


def test_review15b_an_object_into_a_column_named_with_a_backslash_is_stored_as_null(r, m, prefix):
    """Found by review (fixed): an object or array into a non-JSON column whose name holds a
    backslash (legal in MariaDB: `back\\slash`) is silently stored as NULL --
    the record is acked as written, its value is gone. render._texts builds
    the JSON path '$."' + name + '"' without escaping the name for JSON path
    syntax; merge._literal then SQL-escapes it, and MariaDB reads `\\s` in
    the path's quoted key as an escape, finds no such member, and
    JSON_EXTRACT gives NULL. Fix: escape the key for the JSON path (\\ and ")
    or render the value's compact JSON in Python."""
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, `back\\slash` TEXT)")
    t = Table("p")
    Syncwd(r, prefix=prefix).update(t, {"id": 1, "back\\slash": {"a": 1}})
    report = drain(r, m, prefix)
    assert report.exit_code == 0, report.aborted
    assert m.sql("SELECT `back\\slash` FROM p") == (('{"a":1}',),)


def test_review15b_an_object_into_a_column_named_with_a_quote_strands_the_partition(r, m, prefix):
    """Found by review (fixed): an object or array into a non-JSON column whose name holds a
    double quote (`we"ird`) makes the stage INSERT fail with MariaDB error
    4042 "Syntax error in JSON path" (the path '$."we"ird"' is malformed).
    4042 is neither a data error nor transient, so the sink raises it, the
    partition aborts (exit 3) and, the batch being adopted first by every
    later drain, the partition's other records never land: one record
    strands its partition on every drain. Fix: escape the name in the JSON
    path (or render in Python); at least a per-record error must be a dead
    letter, not a fault."""
    m.sql('CREATE TABLE p (id INT PRIMARY KEY, `we"ird` TEXT, n INT)')
    t = Table("p")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "n": i} for i in range(1, 21)])
    sw.update(t, {"id": 100, 'we"ird': {"a": 1}})
    first = drain(r, m, prefix)
    sw.update_many(t, [{"id": i, "n": i} for i in range(21, 31)])
    second = drain(r, m, prefix)
    assert m.sql("SELECT COUNT(*) FROM p")[0][0] >= 30, (first.aborted, second.aborted)
    assert second.exit_code in (0, 1), second.aborted
    assert '{"a":1}' in [row[0] for row in m.sql('SELECT `we"ird` FROM p')] or "100" in dead_entries(
        r, t.keys(0, prefix)
    )


def test_review15b_an_object_under_an_escaped_key_overwrites_the_column_with_null(r, m, prefix):
    """Found by review (fixed): a record whose key is spelled with a JSON escape -- Python's
    json.dumps writes a non-ASCII key "é" as "\\u00e9" by default -- and whose
    value is an object or array lands NULL in a non-JSON column, over the
    value the row had, acked as written. The document is valid and the key is
    the column's (the sink's own reading finds it), but render.FromDocument
    has MariaDB extract '$."é"' from the raw document text, and MariaDB
    matches path keys against the key as spelled (unescaped), finds nothing,
    and JSON_EXTRACT gives NULL. README: an object or array "becomes
    MariaDB's JSON_COMPACT of it"; "a missing key never touches its column".
    Fix: render the compact JSON of the value the sink read (render.compact),
    not a path into the raw document."""
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, `é` TEXT)")
    m.sql("INSERT INTO p VALUES (1, 'keep')")
    t = Table("p")
    Syncwd(r, prefix=prefix).register(t)
    raw_write(r, t, prefix, "1", b'{"id": 1, "\\u00e9": {"a": 1}}')
    report = drain(r, m, prefix)
    assert report.exit_code == 0, report.aborted
    assert m.sql("SELECT `é` FROM p") == (('{"a":1}',),)


def test_review15b_a_document_nested_deeper_than_32_strands_the_partition(r, m, prefix):
    """Found by review (fixed): a record with an object into a TEXT column and, anywhere in its
    document (even under a key that is no column), JSON nested deeper than 32
    levels makes the stage INSERT fail with MariaDB error 4040 "Limit of 32 on
    JSON nested structures depth is reached ... 'json_extract'" (FromDocument
    has MariaDB parse the whole document). 4040 is neither a data error nor
    transient (sinks/mysql/faults.py), so the sink raises, the partition
    aborts with exit 3, and every later drain does the same: one record
    strands the partition (architecture.md: "No single record can strand its
    partition"; PostgreSQL's sink takes any depth). Fix: render in Python
    (render.compact) instead of JSON_EXTRACT on the document; and treat a
    per-row 40xx JSON error as the record's."""
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, t TEXT, n INT)")
    t = Table("p")
    sw = Syncwd(r, prefix=prefix)
    sw.update_many(t, [{"id": i, "n": i} for i in range(1, 21)])
    deep: list = []
    for _ in range(40):
        deep = [deep]
    sw.update(t, {"id": 100, "t": {"a": 1}, "history": deep})
    first = drain(r, m, prefix)
    second = drain(r, m, prefix)
    assert m.sql("SELECT COUNT(*) FROM p")[0][0] >= 20, (first.aborted, second.aborted)
    assert second.exit_code in (0, 1), second.aborted


def test_review15b_a_two_digit_year_with_an_offset_lands_in_the_wrong_century(r, m, prefix):
    """DEFECT (silent wrong value): "0050-06-01T00:00:00Z" into a DATETIME
    column lands as 2050-06-01, while "0050-06-01T00:00:00" (no offset) lands
    as 0050-06-01. render._utc formats the UTC time with strftime("%Y-..."),
    which writes the year 50 as "50" (not zero-padded); MariaDB reads a
    two-digit year as 19xx/20xx. Fix: format with f"{moment.year:04d}-..." or
    isoformat(sep=" ")."""
    m.sql("CREATE TABLE p (id INT PRIMARY KEY, ts DATETIME)")
    t = Table("p")
    Syncwd(r, prefix=prefix).update_many(
        t, [{"id": 1, "ts": "0050-06-01T00:00:00Z"}, {"id": 2, "ts": "0050-06-01T00:00:00"}]
    )
    report = drain(r, m, prefix)
    assert report.exit_code == 0, report.aborted
    got = dict(m.sql("SELECT id, CAST(ts AS CHAR) FROM p"))
    assert got == {1: "0050-06-01 00:00:00", 2: "0050-06-01 00:00:00"}, got


def test_review15b_key_only_rows_merged_again_after_a_failed_ack_are_reported_skipped(r, m, prefix, monkeypatch):
    """DEFECT (accounting, the built-in sink): records of key columns only
    insert 20 new rows; the ack fails once (a Redis blip) and the batch is
    merged again: now the rows exist, so the sink says unchanged=20, and
    partition._merge subtracts that from ``upserted`` and adds it to
    ``skipped`` although these records were counted the first time
    (``_unacked``). Report: upserted 0, skipped 20 for 20 rows this drain
    inserted. See the custom-sink twin in test_review15b_partition.py."""
    import redis.exceptions

    from syncwd_fast import partition

    m.sql("CREATE TABLE p (id INT PRIMARY KEY, note TEXT NULL)")
    t = Table("p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i} for i in range(20)])
    real_ack = partition.scripts.ack
    failed = []

    def flaky_ack(client, keys, run, token, ttl, pops, *args, **kwargs):
        if pops and not failed:
            failed.append(1)
            raise redis.exceptions.ConnectionError("link dropped during the ack")
        return real_ack(client, keys, run, token, ttl, pops, *args, **kwargs)

    monkeypatch.setattr(partition.scripts, "ack", flaky_ack)
    report = drain(r, m, prefix, retries=2)
    assert failed and m.sql("SELECT COUNT(*) FROM p")[0][0] == 20
    assert (report.exit_code, report.upserted, report.skipped) == (0, 20, 0), report
