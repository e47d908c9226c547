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

from dataclasses import dataclass

from .faults import CONFIGURATION, DATA, DATA_CLASSES, JSON_ERRORS, SCHEMA, TRANSIENT

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


# A record's error as faults.is_data_error judges one: by its number, else
# by its SQLSTATE class unless the number is the link's, configuration's or
# schema's.
_DATA = ",".join(str(n) for n in sorted({*DATA, *JSON_ERRORS}))
_NOT_DATA = ",".join(str(n) for n in sorted({*TRANSIENT, *CONFIGURATION, *SCHEMA}))
_CLASSES = ",".join(f"'{c}'" for c in DATA_CLASSES)


def block(stage: str, steps: list[Step], chunk: list[int]) -> str:
    """The compound statement merging the records ``chunk`` one by one."""
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
        data=_DATA,
        not_data=_NOT_DATA,
        classes=_CLASSES,
        results=RESULTS,
        body="\n".join(lines),
    )
