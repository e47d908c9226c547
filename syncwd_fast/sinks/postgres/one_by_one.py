"""Merging a failed statement's records one by one, server-side.

Halving finds k bad records among n in about 2·k·log2(n/k) statements, each
with its savepoint round trips: cheap for a few bad records, a crawl when a
fifth of a batch is bad in a way the screen cannot see (a trigger's RAISE, an
exclusion constraint, a domain's CHECK). Once halving has found several bad
records in a batch, the rest of the search runs each record's statements in a
subtransaction of its own inside one PL/pgSQL call per chunk of records: one
round trip per chunk, however many records are bad.

The function is written per column group with the group's statements as
static SQL, whose plans PL/pgSQL keeps: a dynamic ``EXECUTE`` per record
planned each statement again and cost four times the server time.

A record may fail only because another record of the batch had not landed
yet (a table's reference to itself: a chain of references, or a cycle that
lands only in one statement): merge.py tries those together, once the ones
whose reference nothing in the table or among them can meet are set aside.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

# The stage row a statement's ``one`` form reads (merge._Statement).
ROW = "syncwd_k"

_TEMPLATE = """CREATE OR REPLACE FUNCTION pg_temp.{name}(syncwd_idx int[]) RETURNS TABLE (
  syncwd_i int, syncwd_state text, syncwd_message text, syncwd_detail text, syncwd_constraint text,
  syncwd_stale boolean, syncwd_unchanged boolean
) LANGUAGE plpgsql AS {tag}
#variable_conflict use_variable
DECLARE
  syncwd_k int;
  syncwd_got bigint;
BEGIN
  FOREACH syncwd_k IN ARRAY syncwd_idx LOOP
    syncwd_i := syncwd_k;
    syncwd_state := NULL;
    syncwd_message := NULL;
    syncwd_detail := NULL;
    syncwd_constraint := NULL;
    syncwd_stale := false;
    syncwd_unchanged := false;
    BEGIN
{body}
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS syncwd_state = RETURNED_SQLSTATE, syncwd_message = MESSAGE_TEXT,
        syncwd_detail = PG_EXCEPTION_DETAIL, syncwd_constraint = CONSTRAINT_NAME;
      IF left(syncwd_state, 2) IN ({classes}) OR syncwd_state IN ({states}) THEN
        RAISE;
      END IF;
      syncwd_stale := false;
      syncwd_unchanged := false;
    END;
    IF syncwd_state IS NOT NULL OR syncwd_stale OR syncwd_unchanged THEN
      RETURN NEXT;
    END IF;
  END LOOP;
END {tag}"""


@dataclass(frozen=True)
class Each:
    """A group's one-by-one function: the statement creating it, and the call."""

    create: str
    call: str


def each_function(
    statements: list[tuple[str, bool, bool]], raise_classes: tuple[str, ...], raise_states: tuple[str, ...]
) -> Each:
    """The function running ``statements`` (text reading stage row ``ROW``,
    whether it yields the rows the version guard keeps out, whether it is an
    ``INSERT ... DO NOTHING`` whose untouched rows were there already) for
    each record in a subtransaction of its own. Errors of ``raise_classes``
    and ``raise_states`` are raised again, so the caller treats them as it
    treats them from any statement (a fault, a schema change); every other
    error is the record's."""
    lines = []
    for text, returns_stale, counts_unchanged in statements:
        if returns_stale:
            lines.append(f"      syncwd_stale := EXISTS ({text});")
        else:
            lines.append(f"      {text};")
            if counts_unchanged:
                lines.append("      GET DIAGNOSTICS syncwd_got = ROW_COUNT;")
                lines.append("      syncwd_unchanged := syncwd_got = 0;")
    body = "\n".join(lines)
    name = "syncwd_each_" + hashlib.sha1(body.encode()).hexdigest()[:16]
    tag = "$syncwd$"
    while tag in body:  # a dollar quote no statement holds
        tag = tag[:-1] + "_$"
    create = _TEMPLATE.format(
        name=name,
        tag=tag,
        body=body,
        classes=", ".join(f"'{c}'" for c in raise_classes),
        states=", ".join(f"'{s}'" for s in raise_states),
    )
    return Each(create, f"SELECT * FROM pg_temp.{name}(%s)")


@dataclass(frozen=True)
class Failure:
    """Why one record failed: as PostgreSQL's diagnostics say."""

    state: str
    message: str
    detail: str
    constraint: str

    def reason(self) -> str:
        """As merge.describe words a psycopg error."""
        text = f"{self.message} ({self.detail})" if self.detail else self.message
        return f"{text} [SQLSTATE {self.state}]"


@dataclass
class Outcome:
    """What one call found: failures (stage index -> Failure), records the
    version guard kept out, and records an ``INSERT ... DO NOTHING`` found
    there already."""

    failed: dict[int, Failure]
    stale: set[int]
    unchanged: int


def outcome(rows: list[tuple[Any, ...]]) -> Outcome:
    """The rows of a call: (i, state, message, detail, constraint, stale, unchanged)."""
    return Outcome(
        {row[0]: Failure(row[1], row[2] or "", row[3] or "", row[4] or "") for row in rows if row[1]},
        {row[0] for row in rows if row[5] and not row[1]},
        sum(1 for row in rows if row[6] and not row[1]),
    )
