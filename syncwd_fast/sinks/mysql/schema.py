"""What the MariaDB/MySQL sink needs to know about a target table, read
from information_schema: writable columns and their types, the key's unique
index, the NOT NULL columns a new row must carry, JSON columns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...errors import ConfigurationError, TableMissing
from ...table import Table

# How a column takes a value (render.py): n numeric, b BIT or YEAR (a JSON
# number goes as a number: as a string it would mean its bytes, or a 2-digit
# year), t temporal (DATETIME, TIMESTAMP: ISO strings with an offset are
# turned to UTC), j JSON, s anything else.
NUMERIC = (
    "tinyint",
    "smallint",
    "mediumint",
    "int",
    "integer",
    "bigint",
    "decimal",
    "numeric",
    "float",
    "double",
    "real",
    "bit",
    "year",
)
TEMPORAL = ("datetime", "timestamp")


@dataclass(frozen=True)
class Column:
    name: str
    column_type: str  # as information_schema has it: int(11), varchar(64), enum('a','b'), decimal(18,4) unsigned
    kind: str  # n, t, j or s
    charset: str | None
    collation: str | None

    def stage_type(self, wide: bool = False) -> str:
        """The column's type for the stage, where every column may be NULL;
        ``wide``: a string column as LONGTEXT (LONGBLOB for binary ones), for
        a target whose rows are near the row size limit."""
        text = self.column_type
        if wide:
            base = text.split("(")[0].lower()
            if base in ("char", "varchar"):
                text = "LONGTEXT"
            elif base in ("binary", "varbinary"):
                text = "LONGBLOB"
        if self.charset and self.collation:
            text += f" CHARACTER SET {self.charset} COLLATE {self.collation}"
        return text + " NULL DEFAULT NULL"


@dataclass(frozen=True)
class Check:
    name: str
    clause: str  # as information_schema has it: bare, backquoted column names
    columns: tuple[str, ...]  # the columns it reads


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    referenced: str  # `database`.`table`
    referenced_columns: tuple[str, ...]


@dataclass(frozen=True)
class Unique:
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Constraints:
    """What the screen (screen.py) may judge set-wise when a statement fails."""

    checks: tuple[Check, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    uniques: tuple[Unique, ...] = ()  # unique indexes other than the key's
    before_triggers: bool = False  # a BEFORE INSERT or UPDATE trigger may change a row


@dataclass(frozen=True)
class MySQLSchema:
    table: Table
    database: str
    name: str
    columns: tuple[Column, ...]  # writable columns in table order (no generated ones)
    required: frozenset[str]  # NOT NULL, no default, not AUTO_INCREMENT: a new row must carry them
    insert_triggers: bool  # a BEFORE INSERT trigger may fill a required column
    # Another unique index besides the key's: ON DUPLICATE KEY UPDATE would
    # update whichever row conflicts, so rows are updated and inserted apart
    # (a conflict on the other index is then the record's error).
    other_unique: bool = False
    constraints: Constraints = Constraints()

    @property
    def key(self) -> tuple[str, ...]:
        return self.table.key_columns

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def split_name(table: Table, default_database: str) -> tuple[str, str]:
    """``schema.table`` is MySQL's ``database.table``; a bare name is in the DSN's database."""
    if "." in table.name:
        database, name = table.name.split(".", 1)
        return database, name
    return default_database, table.name


def load_schema(conn: Any, table: Table, default_database: str) -> MySQLSchema:
    database, name = split_name(table, default_database)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA,"
            " CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (database, name),
        )
        rows = cur.fetchall()
        if not rows:
            raise TableMissing(table.name, f"MariaDB/MySQL database {database!r}")
        # MariaDB stores JSON as LONGTEXT with a json_valid() CHECK; MySQL has a json type.
        checks = ""
        clauses: list[tuple[str, str]] = []
        if _has_check_table(cur):
            cur.execute(
                "SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS"
                " WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s ORDER BY CONSTRAINT_NAME",
                (database, name),
            )
            clauses = [(str(n), str(c)) for n, c in cur.fetchall()]
            checks = " ".join(c for _, c in clauses)
        cur.execute(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS"
            " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND NON_UNIQUE = 0",
            (database, name),
        )
        unique: dict[str, list[str]] = {}
        for index, column in cur.fetchall():
            unique.setdefault(index, []).append(column)
        cur.execute(
            "SELECT EVENT_MANIPULATION FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = %s"
            " AND EVENT_OBJECT_TABLE = %s AND ACTION_TIMING = 'BEFORE'",
            (database, name),
        )
        events = {str(r[0]) for r in cur.fetchall()}
        triggers = "INSERT" in events
        # With each side's type and collation: InnoDB compares a key as stored
        # (a CHAR padded, under a NO PAD collation too), which the screen's
        # comparison of the two values matches only for alike plain types.
        cur.execute(
            "SELECT k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, k.REFERENCED_TABLE_NAME,"
            " k.REFERENCED_COLUMN_NAME, c.DATA_TYPE, c.COLLATION_NAME, r.DATA_TYPE, r.COLLATION_NAME"
            " FROM information_schema.KEY_COLUMN_USAGE k"
            " JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = k.TABLE_SCHEMA AND c.TABLE_NAME = k.TABLE_NAME"
            " AND c.COLUMN_NAME = k.COLUMN_NAME"
            " LEFT JOIN information_schema.COLUMNS r ON r.TABLE_SCHEMA = k.REFERENCED_TABLE_SCHEMA"
            " AND r.TABLE_NAME = k.REFERENCED_TABLE_NAME AND r.COLUMN_NAME = k.REFERENCED_COLUMN_NAME"
            " WHERE k.TABLE_SCHEMA = %s AND k.TABLE_NAME = %s AND k.REFERENCED_TABLE_NAME IS NOT NULL"
            " ORDER BY k.CONSTRAINT_NAME, k.ORDINAL_POSITION",
            (database, name),
        )
        references: dict[str, list[tuple[str, str, str, str]]] = {}
        unlike: set[str] = set()
        for constraint, column, ref_db, ref_table, ref_column, *sides in cur.fetchall():
            references.setdefault(str(constraint), []).append(
                (str(column), str(ref_db), str(ref_table), str(ref_column))
            )
            if not _alike(*sides):
                unlike.add(str(constraint))
    conn.commit()  # end the read's transaction: no snapshot held between batches
    columns = []
    required = set()
    for column, column_type, data_type, nullable, default, extra, charset, collation in rows:
        extra = (extra or "").lower()
        if "generated" in extra and "default_generated" not in extra:
            continue  # VIRTUAL / STORED / PERSISTENT: the database's
        data_type = str(data_type).lower()
        if data_type == "json" or f"json_valid(`{column}`)" in checks:
            kind = "j"
        elif data_type in ("bit", "year"):
            kind = "b"
        elif data_type in NUMERIC:
            kind = "n"
        elif data_type in TEMPORAL:
            kind = "t"
        else:
            kind = "s"
        columns.append(Column(column, str(column_type), kind, charset, collation))
        if nullable == "NO" and default is None and "auto_increment" not in extra:
            required.add(column)
    names = [c.name for c in columns]
    for column in (*table.key_columns, *([table.version_column] if table.version_column else [])):
        if column not in names:
            raise ConfigurationError(f"table {table.name!r} has no writable column {column!r}")
    key = sorted(table.key_columns)
    if key not in [sorted(cols) for cols in unique.values()]:
        raise ConfigurationError(
            f"table {table.name!r} has no primary key or unique index on ({', '.join(table.key_columns)})"
        )
    other = any(sorted(cols) != key for cols in unique.values())
    constraints = Constraints(
        tuple(Check(n, c, _read_columns(c, names)) for n, c in clauses),
        tuple(
            ForeignKey(
                constraint,
                tuple(r[0] for r in refs),
                f"{_quote(refs[0][1])}.{_quote(refs[0][2])}",
                tuple(r[3] for r in refs),
            )
            for constraint, refs in references.items()
            if (refs[0][1], refs[0][2]) != (database, name)  # a reference to itself: a row of the batch may meet it
            and constraint not in unlike
        ),
        tuple(Unique(index, tuple(cols)) for index, cols in sorted(unique.items()) if sorted(cols) != key),
        bool(events & {"INSERT", "UPDATE"}),
    )
    return MySQLSchema(table, database, name, tuple(columns), frozenset(required), triggers, other, constraints)


def _alike(data_type: Any, collation: Any, ref_type: Any, ref_collation: Any) -> bool:
    """Whether a foreign key's column and the column it references compare
    in the screen as InnoDB compares them: the same type, not a padded one
    (CHAR, BINARY), the same collation, and not a NO PAD one."""
    kinds = {str(data_type).lower(), str(ref_type).lower()}
    names = {str(collation or "").lower(), str(ref_collation or "").lower()}
    return (
        len(kinds) == 1
        and not kinds & {"char", "binary"}
        and len(names) == 1
        and not any("nopad" in n or "_0900_" in n for n in names)
    )


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _read_columns(clause: str, names: list[str]) -> tuple[str, ...]:
    """The columns a CHECK clause reads (its backquoted names); empty when
    one of them is not a writable column (the screen then leaves it alone)."""
    found = tuple(dict.fromkeys(m.replace("``", "`") for m in re.findall(r"`((?:[^`]|``)*)`", clause)))
    return found if all(n in names for n in found) else ()


def _has_check_table(cur: Any) -> bool:
    cur.execute(
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'information_schema'"
        " AND TABLE_NAME = 'CHECK_CONSTRAINTS'"
    )
    return bool(cur.fetchone()[0])
