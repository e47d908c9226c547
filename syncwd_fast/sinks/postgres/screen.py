"""Finding set-wise the records a failed statement refused.

When a statement over a column group fails for its data, the bad records
are looked for in one statement over the stage before any halving: every
CHECK constraint whose columns the group carries, evaluated on the records'
values; every foreign key to another table whose columns it carries, as an
anti-join to the referenced table; every other unique index whose columns it
carries, as a join to the target. The rows found leave the stage (a
``DELETE ... RETURNING`` of the screen) with a reason naming the constraint,
and the statement runs again on the rest. Halving is left for what the
screen cannot see: triggers, exclusion constraints, domains' checks, a
constraint over a column the group does not carry, two records of one batch
that collide with each other.

A value on the jsonb path that does not convert to its column's type makes
the screen itself fail; such values are found first, each tried by a
PL/pgSQL function in a subtransaction of its own (only on the jsonb path,
only when a screen failed so).

The screen flags only what PostgreSQL would refuse (schema.load_constraints
leaves out what it cannot judge exactly: per-partition copies of a foreign
key, referenced tables with row security, columns and indexes with a
collation or operator class of their own): a record the version
guard keeps out is not updated, so it is judged only where PostgreSQL checks
the proposed row anyway (CHECKs of an ``INSERT ... ON CONFLICT``); a foreign
key is checked only where the record changes it (an existing row may hold a
value a ``NOT VALID`` key let through); a unique value is a conflict only
with a row whose key no record of the batch names (that row may be changed
or deleted by the batch first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from psycopg import sql

from .schema import Name, TableSchema, Text

if TYPE_CHECKING:
    from .merge import Merger

CAST_ERROR = """
CREATE OR REPLACE FUNCTION pg_temp.syncwd_cast_error(v text, t text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  IF v IS NULL THEN
    RETURN NULL;
  END IF;
  EXECUTE format('SELECT %L::%s', v, t);
  RETURN NULL;
EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
  RETURN SQLERRM || ' [SQLSTATE ' || SQLSTATE || ']';
END $$
"""


@dataclass(frozen=True)
class ScreenSQL:
    """A screen's statement (by group, by index), returning rows of (stage
    index, which of ``reasons``, the values it names), and the reasons."""

    whole: sql.Composed
    some: sql.Composed
    reasons: tuple[str, ...]  # "{}" stands for the values
    checks: int = 0  # the first reasons are CHECKs'

    def reason(self, number: int, values: str | None) -> str:
        return self.reasons[number].replace("{}", values or "")


_WHERE = (sql.SQL("s.g = %(g)s"), sql.SQL("s.i = ANY(%(idx)s)"))


def _alias(schema: TableSchema, name: str) -> Name:
    """A column name of the screen's own that no column of the table has."""
    name = f"syncwd_{name}"
    while name in schema.columns:
        name += "_"
    return Name(name)


def _x(name: str) -> sql.Composed:
    return sql.SQL("x.{}").format(Name(name))


def _all(parts: list[sql.Composable] | tuple[sql.Composable, ...], glue: str = " AND ") -> sql.Composed:
    return sql.SQL(glue).join(parts)


def constraint_screen(
    merger: Merger, columns: tuple[str, ...], guarded_update: bool, new_only: bool = False, only_checks: bool = False
) -> ScreenSQL | None:
    """The screen of a group carrying ``columns``, as a ``DELETE`` of the rows
    it finds from the stage; None when no constraint it can judge applies.
    ``guarded_update``: the group is merged by ``UPDATE`` (a new row would
    lack a column) under a version guard, so a record the guard keeps out is
    checked by nothing. ``new_only``: the group only inserts the rows that
    are missing (key columns only, lacking a required one), so a record of
    an existing row is checked by nothing. ``only_checks``: the CHECKs alone
    (cheaper by far than looking up keys, for a group whose bad records
    broke CHECKs only: merge.py screens it so before its statement)."""
    s = merger.schema
    c = s.constraints
    if c.before_triggers:
        return None
    carried = set(columns)
    checks = [k for k in c.checks if k.columns and carried.issuperset(k.columns)]
    keys = [k for k in c.foreign_keys if carried.issuperset(k.columns)] if not only_checks else []
    uniques = [u for u in c.uniques if carried.issuperset(u.columns)] if not only_checks else []
    if not (checks or keys or uniques):
        return None
    version = s.table.version_column if s.table.version_column in carried else None
    join = bool(version) or new_only  # the stored row: its version, or whether there is one
    # A unique index covers the table's own rows, not those of tables
    # inheriting from it; the merge's other reads take the table whole, and
    # so does the screen where it asks what they ask.
    unique_target = sql.SQL("ONLY {}").format(s.ident) if c.only else s.ident
    used = tuple(
        dict.fromkeys(
            [*s.key, *(n for k in checks for n in k.columns), *(n for k in keys for n in k.columns)]
            + [n for u in uniques for n in u.columns]
        )
    )
    i, stale, which = _alias(s, "i"), _alias(s, "stale"), _alias(s, "k")
    select: list[sql.Composable] = [sql.SQL("s.i AS {}").format(i)]
    select += [sql.SQL("{} AS {}").format(merger._col(n), Name(n)) for n in used]
    if version:
        select.append(
            sql.SQL("(t.{0} IS NOT NULL AND {1} IS NOT NULL AND t.{0} > {1}) AS {2}").format(
                Name(version), merger._col(version), stale
            )
        )
    if new_only:
        select.append(sql.SQL("(t.{} IS NULL) AS {}").format(Name(s.key[0]), stale))
    fresh: sql.Composable = sql.SQL("NOT x.{}").format(stale) if version else sql.SQL("true")
    if new_only:
        fresh = sql.SQL("x.{}").format(stale)  # a new row, to be inserted
    relation = s.table.name.rpartition(".")[2]
    cases: list[tuple[sql.Composable, tuple[str, ...]]] = []  # condition, the columns its reason names
    reasons: list[str] = []
    for check in checks:
        # The expression reads bare column names: x's. Its % signs are not placeholders.
        failing: sql.Composable = sql.SQL("({}) IS FALSE").format(sql.SQL(check.expression.replace("%", "%%")))
        if guarded_update or new_only:
            failing = sql.SQL("{} AND {}").format(fresh, failing)
        cases.append((failing, ()))
        reasons.append(f'new row for relation "{relation}" violates check constraint "{check.name}" [SQLSTATE 23514]')
    for k in keys:
        cases.append(
            (
                _all(
                    [
                        fresh,
                        *(sql.SQL("{} IS NOT NULL").format(_x(n)) for n in k.columns),
                        sql.SQL("NOT EXISTS (SELECT FROM {} AS r WHERE {})").format(
                            sql.SQL(k.referenced.replace("%", "%%")),
                            _all(
                                [
                                    sql.SQL("r.{} = {}").format(Name(rc), _x(n))
                                    for n, rc in zip(k.columns, k.referenced_columns)
                                ]
                            ),
                        ),
                        # A value the row holds already is not checked again (a NOT
                        # VALID key may have let it in): looked up for the few left.
                        sql.SQL("NOT EXISTS (SELECT FROM {} AS o WHERE {} AND {})").format(
                            s.ident,
                            _all([sql.SQL("o.{0} = {1}").format(Name(n), _x(n)) for n in s.key]),
                            _all([sql.SQL("o.{0} IS NOT DISTINCT FROM {1}").format(Name(n), _x(n)) for n in k.columns]),
                        ),
                    ]
                ),
                k.columns,
            )
        )
        reasons.append(
            f'insert or update on table "{relation}" violates foreign key constraint "{k.name}"'
            f" (Key ({', '.join(k.columns)})=({{}}) is not present in table {k.referenced}.) [SQLSTATE 23503]"
        )
    for u in uniques:
        cases.append(
            (
                _all(
                    [
                        fresh,
                        *(sql.SQL("{} IS NOT NULL").format(_x(n)) for n in u.columns),
                        # A row a record of the batch names may be changed first: not
                        # judged (NOT IN the batch's keys: one hashed set per statement).
                        sql.SQL(
                            "EXISTS (SELECT FROM {} AS o WHERE {} AND NOT ({}) AND ({}) NOT IN (SELECT {} FROM {}))"
                        ).format(
                            unique_target,
                            _all([sql.SQL("o.{} = {}").format(Name(n), _x(n)) for n in u.columns]),
                            _all([sql.SQL("o.{} = {}").format(Name(n), _x(n)) for n in s.key]),
                            sql.SQL(", ").join(sql.SQL("o.{}").format(Name(n)) for n in s.key),
                            sql.SQL(", ").join(merger._col(n) for n in s.key),
                            merger._source(s.key),
                        ),
                    ]
                ),
                u.columns,
            )
        )
        reasons.append(
            f'duplicate key value violates unique constraint "{u.name}"'
            f" (Key ({', '.join(u.columns)})=({{}}) already exists.) [SQLSTATE 23505]"
        )

    names: list[sql.Composable] = [
        sql.SQL("WHEN {} THEN concat_ws(', ', {})").format(
            Text(n), sql.SQL(", ").join(sql.SQL("y.{}::text").format(Name(c)) for c in named)
        )
        for n, (_, named) in enumerate(cases)
        if named
    ]

    def statement(where: sql.Composable) -> sql.Composed:
        # Each condition once per row (a CASE stops at the first that holds).
        return sql.SQL(
            "WITH bad AS (SELECT y.{i} AS i, y.{which} AS k, CASE y.{which} {names} END AS v"
            " FROM (SELECT x.*, CASE {whens} END AS {which}"
            " FROM (SELECT {select} FROM {source}{join} WHERE {where}) AS x) AS y WHERE y.{which} IS NOT NULL)"
            " DELETE FROM {stage} AS st USING bad WHERE st.i = bad.i RETURNING bad.i, bad.k, bad.v"
        ).format(
            i=i,
            which=which,
            whens=sql.SQL(" ").join(
                sql.SQL("WHEN {} THEN {}").format(cond, Text(n)) for n, (cond, _) in enumerate(cases)
            ),
            names=sql.SQL(" ").join(names or [sql.SQL("WHEN -1 THEN NULL")]),
            select=sql.SQL(", ").join(select),
            source=merger._source(used),
            join=sql.SQL(" LEFT JOIN {} AS t ON {}").format(s.ident, merger._key_match("t")) if join else sql.SQL(""),
            where=where,
            stage=merger.stage,
        )

    return ScreenSQL(statement(_WHERE[0]), statement(_WHERE[1]), tuple(reasons), len(checks))


def cast_screen(merger: Merger, columns: tuple[str, ...]) -> ScreenSQL | None:
    """Records on the jsonb path whose value of a column the group carries
    does not convert to the column's type, as a ``DELETE`` of those rows
    from the stage; None when no carried column takes a scalar."""
    s = merger.schema
    types = dict(s.types)
    scalar = [n for n in columns if s.kinds[s.columns.index(n)] in "sf"]
    if not scalar:
        return None

    def statement(where: sql.Composable) -> sql.Composed:
        return sql.SQL(
            "WITH bad AS (SELECT DISTINCT ON (s.i) s.i, c.n AS k, e.error AS v"
            " FROM {stage} AS s CROSS JOIN (VALUES {pairs}) AS c(n, name, type)"
            " CROSS JOIN LATERAL (SELECT pg_temp.syncwd_cast_error(s.doc ->> c.name, c.type) AS error) AS e"
            " WHERE s.doc IS NOT NULL AND {where} AND jsonb_typeof(s.doc -> c.name) IN ('string', 'number', 'boolean')"
            " AND e.error IS NOT NULL ORDER BY s.i, c.n)"
            " DELETE FROM {stage} AS st USING bad WHERE st.i = bad.i RETURNING bad.i, bad.k, bad.v"
        ).format(
            stage=merger.stage,
            pairs=sql.SQL(", ").join(
                sql.SQL("({}, {}, {})").format(Text(n), Text(name), Text(types[name])) for n, name in enumerate(scalar)
            ),
            where=where,
        )

    reasons = tuple(f'column "{name}": {{}}' for name in scalar)
    return ScreenSQL(statement(_WHERE[0]), statement(_WHERE[1]), reasons)
