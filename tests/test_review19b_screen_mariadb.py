"""Second review of the screen (issue 19) on MariaDB (fixed since): a record the server
accepts was dead-lettered by the screen. The correct behaviour: only the
records the server refuses are dead-lettered, every other record lands."""

from __future__ import annotations

from typing import Any

from syncwd_fast import FastDrainer, Syncwd, Table

from .helpers import dead_of


def drain(r: Any, dsn: str, prefix: str, table: Table, records: list[dict[str, Any]], batch: int = 1000) -> Any:
    Syncwd(r, prefix=prefix).update_many(table, records)
    return FastDrainer(r, dsn, prefix=prefix, batch=batch).drain()


def test_mariadb_a_foreign_key_to_a_char_key_compares_as_innodb_does(r, m, prefix):
    """Under a NO PAD collation (MySQL 8's default utf8mb4_0900_ai_ci is
    one) InnoDB compares the referencing value with the CHAR key as stored,
    padded: 'ab   ' has its parent, 'ab' and 'ab ' have none (the server
    takes 'ab   ' alone, below). The screen's `r.code = x.code` reads the
    CHAR without its padding ('ab'), so it finds no parent for 'ab   ' and
    dead-letters record 12, which the server takes."""
    m.sql("CREATE TABLE parent (code char(5) COLLATE utf8mb4_nopad_bin PRIMARY KEY)")
    m.sql("INSERT INTO parent VALUES ('ab')")
    m.sql(
        "CREATE TABLE p (id int PRIMARY KEY, code varchar(10) COLLATE utf8mb4_nopad_bin, v int CHECK (v >= 0),"
        " FOREIGN KEY (code) REFERENCES parent (code))"
    )
    m.sql("INSERT INTO p VALUES (100, 'ab   ', 1)")  # the server accepts it
    m.sql("DELETE FROM p")
    t = Table(f"{m.dsn.rsplit('/', 1)[1]}.p")
    drain(r, m.dsn, prefix, t, [{"id": 12, "code": "ab   ", "v": 1}, {"id": 2, "code": "ab   ", "v": -5}])
    assert set(dead_of(r, t, prefix)) == {"2"}, dead_of(r, t, prefix)
    assert m.sql("SELECT id, code FROM p") == ((12, "ab   "),)
