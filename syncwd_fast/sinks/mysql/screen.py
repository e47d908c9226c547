"""Finding set-wise the records a failed statement refused, as on
PostgreSQL (sinks/postgres/screen.py says what is judged and why): one
``SELECT`` over the stage's rows evaluates the CHECKs, foreign keys to other
tables and other unique indexes whose columns a group carries, and names the
first each record breaks. MariaDB checks a CHECK on the row an ``INSERT ...
ON DUPLICATE KEY UPDATE`` proposes before it looks for the duplicate, as
PostgreSQL does, so the same records are judged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .merge import Merger


@dataclass(frozen=True)
class ScreenSQL:
    """A ``SELECT`` over the stage rows ``head + indices + tail`` returning
    (stage index, which of ``reasons``, the values it names). No placeholder
    in the text: a CHECK clause may hold any."""

    head: str
    tail: str
    reasons: tuple[str, ...]  # "{}" stands for the values

    def sql(self, indices: list[int]) -> str:
        return self.head + ",".join(str(i) for i in indices) + self.tail

    def reason(self, number: int, values: str | None) -> str:
        return self.reasons[number].replace("{}", values or "")


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _alias(names: tuple[str, ...], name: str) -> str:
    name = f"syncwd_{name}"
    while name in names:
        name += "_"
    return name


def constraint_screen(merger: Merger, columns: tuple[str, ...], guarded_update: bool) -> ScreenSQL | None:
    """The screen of a group carrying ``columns``; None when no constraint it
    can judge applies. ``guarded_update``: the group is merged by ``UPDATE``
    under a version guard, so a record the guard keeps out is checked by
    nothing."""
    s = merger.schema
    c = s.constraints
    if c.before_triggers or merger.wide:
        # A trigger may change a row after the screen looked; a wide stage
        # holds a CHAR's value with its trailing spaces, the column without.
        return None
    carried = set(columns)
    checks = [k for k in c.checks if k.columns and carried.issuperset(k.columns)]
    keys = [k for k in c.foreign_keys if carried.issuperset(k.columns)]
    uniques = [u for u in c.uniques if carried.issuperset(u.columns)]
    if not (checks or keys or uniques):
        return None
    version = s.table.version_column if s.table.version_column in carried else None
    used = tuple(
        dict.fromkeys(
            [*s.key, *(n for k in checks for n in k.columns), *(n for k in keys for n in k.columns)]
            + [n for u in uniques for n in u.columns]
        )
    )
    i, stale, k = _alias(s.names, "i"), _alias(s.names, "stale"), _alias(s.names, "k")
    select = [f"s.i AS {_q(i)}", *(f"{merger._col(n)} AS {_q(n)}" for n in used)]
    join = ""
    fresh = "TRUE"
    if version:
        v, mine = _q(version), merger._col(version)
        select.append(f"(t.{v} IS NOT NULL AND {mine} IS NOT NULL AND t.{v} > {mine}) AS {_q(stale)}")
        join = f" LEFT JOIN {merger.target} AS t ON {merger._match('t')}"
        fresh = f"NOT x.{_q(stale)}"
    relation = f"{_q(s.database)}.{_q(s.name)}"
    cases: list[tuple[str, tuple[str, ...]]] = []
    reasons: list[str] = []
    for check in checks:
        failing = f"({check.clause}) IS FALSE"
        cases.append((f"{fresh} AND {failing}" if guarded_update else failing, ()))
        reasons.append(f"CONSTRAINT {_q(check.name)} failed for {relation} [MySQL error 4025]")
    for fk in keys:
        present = " AND ".join(f"x.{_q(n)} IS NOT NULL" for n in fk.columns)
        missing = " AND ".join(f"r.{_q(rc)} = x.{_q(n)}" for n, rc in zip(fk.columns, fk.referenced_columns))
        held = " AND ".join(
            [*(f"o.{_q(n)} = x.{_q(n)}" for n in s.key), *(f"o.{_q(n)} <=> x.{_q(n)}" for n in fk.columns)]
        )
        cases.append(
            (
                f"{fresh} AND {present} AND NOT EXISTS (SELECT 1 FROM {fk.referenced} AS r WHERE {missing})"
                # A value the row holds already is not checked again.
                f" AND NOT EXISTS (SELECT 1 FROM {merger.target} AS o WHERE {held})",
                fk.columns,
            )
        )
        reasons.append(
            f"Cannot add or update a child row: a foreign key constraint fails ({relation}, CONSTRAINT {_q(fk.name)}"
            f" FOREIGN KEY ({', '.join(map(_q, fk.columns))}) REFERENCES {fk.referenced}: no row has {{}})"
            " [MySQL error 1452]"
        )
    for u in uniques:
        present = " AND ".join(f"x.{_q(n)} IS NOT NULL" for n in u.columns)
        same = " AND ".join(f"o.{_q(n)} = x.{_q(n)}" for n in u.columns)
        itself = " AND ".join(f"o.{_q(n)} = x.{_q(n)}" for n in s.key)
        okey = ", ".join(f"o.{_q(n)}" for n in s.key)
        skey = ", ".join(f"b.c{merger._position[n]}" for n in s.key)
        cases.append(
            (
                f"{fresh} AND {present} AND EXISTS (SELECT 1 FROM {merger.target} AS o WHERE {same} AND NOT ({itself})"
                # a row a record of the batch names may be changed first: not judged
                f" AND ({okey}) NOT IN (SELECT {skey} FROM {merger.stage} AS b))",
                u.columns,
            )
        )
        reasons.append(f"Duplicate entry '{{}}' for key {_q(u.name)} [MySQL error 1062]")
    whens = " ".join(f"WHEN {cond} THEN {n}" for n, (cond, _) in enumerate(cases))
    names = " ".join(
        f"WHEN {n} THEN CONCAT_WS('-', {', '.join(f'y.{_q(c)}' for c in named)})"
        for n, (_, named) in enumerate(cases)
        if named
    )
    head = (
        f"SELECT y.{_q(i)}, y.{_q(k)}, CASE y.{_q(k)} {names or 'WHEN -1 THEN NULL'} END FROM"
        f" (SELECT x.*, CASE {whens} END AS {_q(k)} FROM (SELECT {', '.join(select)} FROM {merger.stage} AS s{join}"
        " WHERE s.i IN ("
    )
    return ScreenSQL(head, f")) AS x) AS y WHERE y.{_q(k)} IS NOT NULL", tuple(reasons))
