"""What the drain needs to know about a target table, read from pg_catalog."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from ...errors import ConfigurationError, TableMissing
from ...table import Table


@dataclass(frozen=True)
class Check:
    """A CHECK constraint: its expression over bare column names."""

    name: str
    expression: str
    columns: tuple[str, ...]  # the columns it reads


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]  # of the target, in the key's order
    referenced: str  # the referenced table, quoted and schema-qualified
    referenced_columns: tuple[str, ...]


@dataclass(frozen=True)
class Unique:
    """A unique index other than the key's: all of its columns plain, no predicate."""

    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Constraints:
    """What the screen (screen.py) may judge set-wise when a statement fails."""

    checks: tuple[Check, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    uniques: tuple[Unique, ...] = ()
    # the table's foreign keys to itself: a record may need another record
    # of its batch to land first (one_by_one.py), and no screen judges them
    references: tuple[ForeignKey, ...] = ()
    # a BEFORE ROW trigger on INSERT or UPDATE may change a row after the
    # screen looked at it: nothing is judged in advance then
    before_triggers: bool = False
    # the table may have children by inheritance (not partitions), whose rows
    # its unique indexes do not cover: the screen reads it ONLY
    only: bool = False


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
    # a key column is an identity GENERATED ALWAYS: inserts say OVERRIDING SYSTEM VALUE
    overriding: bool = False
    # per writable column, how a JSON value becomes its COPY text (render.py):
    # s scalar, f float8, j jsonb, J json, a array of scalars, x anything else
    kinds: str = ""
    constraints: Constraints = Constraints()

    @property
    def key(self) -> tuple[str, ...]:
        return self.table.key_columns


class Name(sql.Identifier):
    """A name in a statement run with parameters: psycopg reads every % of
    such a statement as a placeholder, so a % in a column's name is doubled."""

    def as_bytes(self, context: Any = None) -> bytes:
        return super().as_bytes(context).replace(b"%", b"%%")


class Text(sql.Literal):
    """A string literal in a statement run with parameters (as ``Name``)."""

    def as_bytes(self, context: Any = None) -> bytes:
        return bytes(super().as_bytes(context)).replace(b"%", b"%%")


def type_sql(name: str) -> sql.SQL:
    """A type's name in a statement run with parameters (as ``Name``)."""
    return sql.SQL(name.replace("%", "%%"))


def identifier(name: str) -> sql.Identifier:
    return sql.Identifier(*name.split("."))


def _base_type(conn: psycopg.Connection[Any], relation: int, column: str) -> str:
    """The SQL type under a column's domain (through domains over domains)."""
    row = conn.execute(
        "WITH RECURSIVE d(oid, typmod) AS ("
        " SELECT atttypid, atttypmod FROM pg_attribute WHERE attrelid = %s AND attname = %s"
        " UNION ALL SELECT t.typbasetype, t.typtypmod FROM d JOIN pg_type t ON t.oid = d.oid WHERE t.typtype = 'd')"
        " SELECT format_type(d.oid, d.typmod) FROM d JOIN pg_type t ON t.oid = d.oid WHERE t.typtype <> 'd'",
        (relation, column),
    ).fetchone()
    return str(row[0]) if row else "text"


# The kind of each writable column: its type, through domains, classified by
# how jsonb_to_record converts a JSON value into it (render.py says why).
_KINDS = """
WITH RECURSIVE d(attname, attnum, oid) AS (
  SELECT attname, attnum, atttypid FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped
  UNION ALL SELECT d.attname, d.attnum, t.typbasetype FROM d JOIN pg_type t ON t.oid = d.oid WHERE t.typtype = 'd')
SELECT d.attname, CASE
  WHEN t.oid = 3802 THEN 'j' WHEN t.oid = 114 THEN 'J' WHEN t.oid = 701 THEN 'f'
  WHEN t.oid IN (22, 30) THEN 'x'  -- int2vector, oidvector: category A, but no array literal input
  WHEN t.typcategory = 'A' THEN CASE
    WHEN e.typtype IN ('b', 'e', 'r', 'm') AND e.typcategory <> 'A' AND e.oid NOT IN (114, 3802)
      AND e.typdelim = ',' AND t.typdelim = ',' THEN 'a' ELSE 'x' END
  WHEN t.typtype IN ('b', 'e', 'r', 'm') THEN 's'
  ELSE 'x' END
FROM d JOIN pg_type t ON t.oid = d.oid LEFT JOIN pg_type e ON e.oid = t.typelem
WHERE t.typtype <> 'd' ORDER BY d.attnum
"""


def load_schema(conn: psycopg.Connection[Any], table: Table) -> TableSchema:
    ident = identifier(table.name)
    oid = conn.execute("SELECT to_regclass(%s)::oid", (ident.as_string(conn),)).fetchone()
    if oid is None or oid[0] is None:
        raise TableMissing(table.name)
    # A column is written unless it is generated, or an identity GENERATED
    # ALWAYS that is not a key (the database numbers it). A new row must carry
    # a NOT NULL column (its own or its domain's) that has no default, its own
    # or its domain's, and is no identity.
    cols = conn.execute(
        "SELECT a.attname, a.attgenerated <> '' OR (a.attidentity = 'a' AND NOT a.attname = ANY(%s)),"
        " (a.attnotnull OR t.typnotnull) AND NOT a.atthasdef AND t.typdefaultbin IS NULL AND a.attidentity = '',"
        " format_type(a.atttypid, a.atttypmod), a.attidentity = 'a', t.typtype = 'd'"
        " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
        " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (list(table.key_columns), oid[0]),
    ).fetchall()
    columns = tuple(name for name, skipped, *_ in cols if not skipped)
    required = frozenset(name for name, skipped, needed, *_ in cols if needed and not skipped)
    # A domain column is read from JSON as its base type: its NOT NULL and
    # CHECKs then apply when the value is assigned, not to columns a record
    # does not carry.
    types = tuple(
        (name, _base_type(conn, oid[0], name) if domain else type_)
        for name, skipped, _, type_, _, domain in cols
        if not skipped
    )
    overriding = any(always and not skipped for _, skipped, _, _, always, _ in cols)
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
    kind_of = dict(conn.execute(_KINDS, (oid[0],)).fetchall())
    kinds = "".join(kind_of.get(name, "x") for name in columns)
    return TableSchema(
        table,
        ident,
        columns,
        required,
        types,
        bool(triggers and triggers[0]),
        overriding,
        kinds,
        load_constraints(conn, oid[0], table.key_columns),
    )


def _names(conn: psycopg.Connection[Any], relation: int, numbers: list[int]) -> tuple[str, ...]:
    rows = dict(
        conn.execute(
            "SELECT attnum, attname::text FROM pg_attribute WHERE attrelid = %s AND attnum = ANY(%s)",
            (relation, numbers),
        ).fetchall()
    )
    return tuple(rows[n] for n in numbers)


def _types(conn: psycopg.Connection[Any], relation: int, numbers: list[int]) -> list[int]:
    rows = dict(
        conn.execute(
            "SELECT attnum, atttypid::int FROM pg_attribute WHERE attrelid = %s AND attnum = ANY(%s)",
            (relation, numbers),
        ).fetchall()
    )
    return [rows[n] for n in numbers]


def _collated(conn: psycopg.Connection[Any], relation: int) -> set[int]:
    """Columns with a collation of their own: the stage's values, of the
    column's type, carry the default one, and compare otherwise."""
    return {
        n
        for (n,) in conn.execute(
            "SELECT attnum FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND attcollation NOT IN (0, 100)",
            (relation,),
        ).fetchall()
    }


def load_constraints(conn: psycopg.Connection[Any], relation: int, key: tuple[str, ...]) -> Constraints:
    """What the screen may judge exactly as PostgreSQL does: the target's
    CHECKs, its foreign keys to other tables (a table's reference to itself
    may be met by a row of the same batch; the copies a partitioned table
    gives each partition are not the constraint; row security on the
    referenced table hides rows the check sees) and its unique indexes
    other than the key's with default operator classes; none over a column
    with a collation of its own."""
    collated = _collated(conn, relation)
    # A CHECK over the whole row (column number 0: a function of the row) is
    # left to the server.
    checks = tuple(
        Check(name, expression, _names(conn, relation, list(numbers or [])))
        for name, expression, numbers in conn.execute(
            "SELECT conname::text, pg_get_expr(conbin, conrelid), conkey::int[] FROM pg_constraint"
            " WHERE conrelid = %s AND contype = 'c' AND NOT 0 = ANY(conkey) ORDER BY conname",
            (relation,),
        ).fetchall()
        if not collated.intersection(numbers or [])
    )
    # The table's own triggers and its partitions' (a row is routed to one and
    # its trigger fires; pg_partition_tree lists nothing for a table not
    # partitioned): ROW | BEFORE, or ROW alone (AFTER), on INSERT (4) or UPDATE (16).
    before, after = conn.execute(
        "SELECT bool_or(tgtype & 3 = 3), bool_or(tgtype & 3 = 1) FROM pg_trigger WHERE (tgrelid = %s OR tgrelid IN"
        " (SELECT relid FROM pg_partition_tree(%s))) AND NOT tgisinternal AND tgtype & 20 <> 0",
        (relation, relation),
    ).fetchone() or (False, False)
    keys = []
    # Not a deferrable key (checked at COMMIT), nor any while an AFTER trigger
    # may write the referenced row first.
    for name, numbers, referenced, ref_relation, ref_numbers in conn.execute(
        "SELECT c.conname::text, c.conkey::int[], c.confrelid::regclass::text, c.confrelid, c.confkey::int[]"
        " FROM pg_constraint c JOIN pg_class r ON r.oid = c.confrelid WHERE c.conrelid = %s AND c.contype = 'f'"
        " AND c.confrelid <> c.conrelid AND c.conparentid = 0 AND NOT r.relrowsecurity AND NOT c.condeferrable"
        " ORDER BY 1",
        (relation,),
    ).fetchall():
        if collated.intersection(numbers) or _collated(conn, ref_relation).intersection(ref_numbers) or after:
            continue
        if _types(conn, relation, numbers) != _types(conn, ref_relation, ref_numbers):
            continue  # compared by the key's own operator (text to char(n): trailing spaces do not count)
        keys.append(
            ForeignKey(name, _names(conn, relation, numbers), referenced, _names(conn, ref_relation, ref_numbers))
        )
    references = tuple(
        ForeignKey(name, _names(conn, relation, numbers), "", _names(conn, relation, ref_numbers))
        for name, numbers, ref_numbers in conn.execute(
            "SELECT conname::text, conkey::int[], confkey::int[] FROM pg_constraint"
            " WHERE conrelid = %s AND contype = 'f' AND confrelid = conrelid AND conparentid = 0 ORDER BY 1",
            (relation,),
        ).fetchall()
    )
    uniques = []
    for name, numbers in conn.execute(
        "SELECT c.relname::text, i.indkey::int[] FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = %s AND i.indisunique AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL"
        " AND NOT EXISTS (SELECT FROM unnest(i.indcollation::oid[]) AS k(oid) WHERE k.oid NOT IN (0, 100))"
        " AND NOT EXISTS (SELECT FROM unnest(i.indclass::oid[]) AS k(oid) JOIN pg_opclass o ON o.oid = k.oid"
        " WHERE NOT o.opcdefault) ORDER BY 1",
        (relation,),
    ).fetchall():
        columns = _names(conn, relation, numbers)
        if sorted(columns) != sorted(key) and not collated.intersection(numbers):
            uniques.append(Unique(name, columns))
    kind = conn.execute("SELECT relkind::text FROM pg_class WHERE oid = %s", (relation,)).fetchone()
    return Constraints(
        checks,
        tuple(keys),
        tuple(uniques),
        references=references,
        before_triggers=bool(before),
        only=bool(kind and kind[0] == "r"),
    )
