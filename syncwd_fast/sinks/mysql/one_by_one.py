"""Merging a failed statement's records one by one, server-side (MariaDB).

As on PostgreSQL (sinks/postgres/one_by_one.py): halving costs a few
statements per bad record, a crawl when a fifth of a batch is bad in a way
the screen cannot see (a trigger's SIGNAL, a key over a CHAR column). Once
both halves of a part fail, its records are merged one at a time inside one
anonymous compound statement (``BEGIN NOT ATOMIC``) per chunk: each record
in a savepoint of its own, under a handler that rolls back to it and notes
the error; what the record's statements found (kept out by the version
guard, there already) is noted the same way, in a temporary table read
after the block. An error that is not the data's is raised again from the
handler, so it ends the batch as from any statement. MySQL has no anonymous
blocks: there (or wherever the block cannot run) halving goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# The stage row a statement's ``{idx}`` names inside the block.
ROW = "syncwd_k"
RESULTS = "syncwd_each"
CREATE_RESULTS = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {RESULTS}"
    " (i INT NOT NULL, what CHAR(1) NOT NULL, code INT, message TEXT) ENGINE=InnoDB"
)
READ_RESULTS = f"SELECT i, what, code, message FROM {RESULTS}"
CLEAR_RESULTS = f"DELETE FROM {RESULTS}"

_BLOCK = """BEGIN NOT ATOMIC
  DECLARE syncwd_k INT;
  DECLARE syncwd_done INT DEFAULT 0;
  DECLARE syncwd_stale INT DEFAULT 0;
  DECLARE syncwd_same INT DEFAULT 0;
  DECLARE syncwd_rows CURSOR FOR SELECT i FROM {stage} WHERE i IN ({chunk}) ORDER BY i;
  DECLARE CONTINUE HANDLER FOR NOT FOUND SET syncwd_done = 1;
  OPEN syncwd_rows;
  syncwd_loop: LOOP
    FETCH syncwd_rows INTO syncwd_k;
    IF syncwd_done THEN
      LEAVE syncwd_loop;
    END IF;
    SET syncwd_stale = 0, syncwd_same = 0;
    BEGIN
      DECLARE EXIT HANDLER FOR SQLEXCEPTION
      BEGIN
        GET DIAGNOSTICS CONDITION 1 @syncwd_code = MYSQL_ERRNO, @syncwd_state = RETURNED_SQLSTATE,
          @syncwd_message = MESSAGE_TEXT;
        IF NOT (@syncwd_code IN ({data}) OR (@syncwd_code NOT IN ({not_data})
            AND LEFT(@syncwd_state, 2) IN ({classes}))) THEN
          RESIGNAL;
        END IF;
        ROLLBACK TO SAVEPOINT syncwd_one;
        INSERT INTO {results} VALUES (syncwd_k, 'f', @syncwd_code, @syncwd_message);
      END;
      SAVEPOINT syncwd_one;
{body}
      IF syncwd_stale THEN
        INSERT INTO {results} VALUES (syncwd_k, 's', NULL, NULL);
      END IF;
      IF syncwd_same THEN
        INSERT INTO {results} VALUES (syncwd_k, 'u', NULL, NULL);
      END IF;
    END;
  END LOOP;
  CLOSE syncwd_rows;
END"""


@dataclass(frozen=True)
class Step:
    """One of a record's statements: ``sql`` reads stage row ``ROW``. Kinds:
    "run" (a write), "stale" (a query yielding the record if the version
    guard keeps it out), "same" (a query yielding it if its row is there
    already: nothing to change), "new" (``sql`` runs only if ``query`` yields
    the record: a new row)."""

    kind: str
    sql: str
    query: str = ""


def block(
    stage: str,
    steps: list[Step],
    chunk: list[int],
    data: Iterable[int],
    not_data: Iterable[int],
    classes: Iterable[str],
) -> str:
    """The compound statement merging the records ``chunk`` one by one.
    An error numbered in ``data``, or of an SQLSTATE class in ``classes``
    and not numbered in ``not_data``, is the record's."""
    lines = []
    for step in steps:
        if step.kind == "stale":
            lines.append(f"      IF EXISTS ({step.sql}) THEN SET syncwd_stale = 1; END IF;")
        elif step.kind == "same":
            lines.append(f"      IF EXISTS ({step.sql}) THEN SET syncwd_same = 1; END IF;")
        elif step.kind == "new":
            lines.append(f"      IF EXISTS ({step.query}) THEN {step.sql}; END IF;")
        else:
            lines.append(f"      {step.sql};")
    return _BLOCK.format(
        stage=stage,
        chunk=",".join(str(i) for i in chunk),
        data=",".join(str(n) for n in sorted(data)),
        not_data=",".join(str(n) for n in sorted(not_data)),
        classes=",".join(f"'{c}'" for c in classes),
        results=RESULTS,
        body="\n".join(lines),
    )
