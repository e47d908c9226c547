"""Names holding % (schema.Name / schema.Text): psycopg reads every % of a
statement run with parameters as a placeholder. Column names are now doubled,
but a column's TYPE is spliced raw (``sql.SQL(types[c])``: merge.py
``_Run``/``Merger._source``'s ``jsonb_to_record(...) AS r(<name> <type>)``
and ``_duplicates_sql``'s casts). A type named with a % (an enum, a
composite, a range: "any other column may be named anything", and so may its
type) makes every statement of the table raise psycopg.ProgrammingError
("only '%s', '%b', '%t' are allowed as placeholders"), which has no SQLSTATE:
not a data error, so every drain of the table aborts, as a column named
``100%`` did before the fix.

Correct behaviour: the records land (write the type as the names are, with
% doubled in statements run with parameters; ``Merger.each`` already undoes
the doubling for the one-by-one function)."""

from __future__ import annotations

from syncwd_fast import FastDrainer, Syncwd, Table

from .helpers import count, dead_of


def test_a_column_whose_type_is_named_with_a_percent_sign_drains(r, db, dsn, schema, prefix):
    db.execute(f"CREATE TYPE {schema}.\"mood%\" AS ENUM ('ok', 'sad')")
    db.execute(f'CREATE TABLE {schema}.p (id int PRIMARY KEY, m {schema}."mood%", v int CHECK (v >= 0))')
    t = Table(f"{schema}.p")
    Syncwd(r, prefix=prefix).update_many(t, [{"id": i, "m": "ok", "v": -1 if i == 3 else i} for i in range(10)])
    report = FastDrainer(r, dsn, prefix=prefix, batch=100).drain()
    assert report.aborted is None, report.aborted
    assert set(dead_of(r, t, prefix)) == {"3"}
    assert count(db, t.name) == 9
