"""What the drain needs to know about a target table, read from pg_catalog."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from .errors import ConfigurationError, TableMissing
from .table import Table


@dataclass(frozen=True)
class TableSchema:
    table: Table
    ident: sql.Identifier  # the quoted, possibly schema-qualified, name
    columns: tuple[str, ...]  # writable columns in table order (no generated ones)
    # NOT NULL columns a new row must carry (no default, not an identity): a
    # record without one of them can only update an existing row
    required: frozenset[str] = frozenset()
    types: tuple[tuple[str, str], ...] = ()  # (column, SQL type) of every writable column
    # a BEFORE INSERT row trigger may fill a required column the record lacks
    insert_triggers: bool = False

    @property
    def key(self) -> tuple[str, ...]:
        return self.table.key_columns


def identifier(name: str) -> sql.Identifier:
    return sql.Identifier(*name.split("."))


def load_schema(conn: psycopg.Connection[Any], table: Table) -> TableSchema:
    ident = identifier(table.name)
    oid = conn.execute("SELECT to_regclass(%s)::oid", (ident.as_string(conn),)).fetchone()
    if oid is None or oid[0] is None:
        raise TableMissing(table.name)
    cols = conn.execute(
        "SELECT attname, attgenerated <> '', attnotnull AND NOT atthasdef AND attidentity = '',"
        " format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (oid[0],),
    ).fetchall()
    columns = tuple(name for name, generated, _, _ in cols if not generated)
    required = frozenset(name for name, generated, needed, _ in cols if needed and not generated)
    types = tuple((name, type_) for name, generated, _, type_ in cols if not generated)
    for column in (*table.key_columns, *([table.version_column] if table.version_column else [])):
        if column not in columns:
            raise ConfigurationError(f"table {table.name!r} has no writable column {column!r}")
    # ON CONFLICT needs a unique, non-partial index on exactly the key columns.
    unique = conn.execute(
        "SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
        " WHERE i.indrelid = %s AND i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL"
        " GROUP BY i.indexrelid",
        (oid[0],),
    ).fetchall()
    if sorted(table.key_columns) not in [row[0] for row in unique]:
        raise ConfigurationError(
            f"table {table.name!r} has no primary key or unique index on ({', '.join(table.key_columns)})"
        )
    triggers = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal AND tgtype & 7 = 7)",
        (oid[0],),
    ).fetchone()
    return TableSchema(table, ident, columns, required, types, bool(triggers and triggers[0]))
