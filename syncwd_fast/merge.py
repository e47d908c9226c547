"""The merge: binary COPY of the batch's JSON documents into a temp stage
table, then ``INSERT ... ON CONFLICT ... DO UPDATE`` for each column group and
``DELETE ... USING`` for tombstones, in one transaction.

PostgreSQL turns each document into a row of the target with
``jsonb_populate_record``: the server's own type input does the typing, a JSON
key that is missing never nulls a column (each group updates only the columns
its records carry), and Python does no per-column work.

A batch PostgreSQL rejects for its data is split in halves until the bad
records are isolated; they are dead-lettered with the server's message and the
rest commits.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from .connection import deadline
from .decode import DELETE, Decoded
from .errors import LeaseLost
from .schema import TableSchema

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_ROW = struct.Struct(">hihi").pack  # 2 fields; int2 group; jsonb length
_COPY = "COPY syncwd_stage (g, doc) FROM STDIN (FORMAT BINARY)"
_LOCK = "SELECT pg_advisory_xact_lock(%s, %s)"

# SQLSTATE classes that blame the data, not the server or the link:
# data exception, integrity violation, program limit (e.g. index row too big),
# errors raised by triggers.
DATA_ERROR_CLASSES = ("22", "23", "54", "P0")


def is_data_error(exc: psycopg.Error) -> bool:
    return bool(exc.sqlstate) and exc.sqlstate[:2] in DATA_ERROR_CLASSES  # type: ignore[index]


def describe(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = diag.message_primary or str(exc).strip()
    if diag.message_detail:
        text += f" ({diag.message_detail})"
    return f"{text} [SQLSTATE {exc.sqlstate}]"


def copy_payload(items: list[tuple[int, str, bytes]]) -> bytes:
    # jsonb's binary form is a version byte (1) and the JSON text.
    return b"".join([_HEADER, *[_ROW(2, 2, g, len(doc) + 1) + b"\x01" + doc for g, _, doc in items], _TRAILER])


@dataclass
class MergeResult:
    upserted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    dead: list[tuple[str, str]] = field(default_factory=list)


class Merger:
    """Merges batches of one table on one connection."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        schema: TableSchema,
        lock_key: tuple[int, int],
        still_leased: Callable[[], bool],
        deadline_s: float = 600.0,
    ) -> None:
        self.conn = conn
        self.deadline_s = deadline_s
        self.schema = schema
        self.lock_key = lock_key
        self.still_leased = still_leased
        self._upserts: dict[tuple[str, ...], sql.Composed] = {}
        self._delete = self._delete_sql()

    def merge(self, batch: Decoded) -> MergeResult:
        result = MergeResult()
        if batch.items:
            self._apply(batch.items, batch.columns, result)
        return result

    def _apply(self, items: list[tuple[int, str, bytes]], columns: list[tuple[str, ...]], result: MergeResult) -> None:
        try:
            self._transaction(items, columns)
        except psycopg.Error as exc:
            if not is_data_error(exc):
                raise
            if len(items) == 1:
                result.dead.append((items[0][1], describe(exc)))
                return
            middle = len(items) // 2
            self._apply(items[:middle], columns, result)
            self._apply(items[middle:], columns, result)
            return
        for group, rid, _ in items:
            (result.deleted if group == DELETE else result.upserted).append(rid)

    def _transaction(self, items: list[tuple[int, str, bytes]], columns: list[tuple[str, ...]]) -> None:
        groups = sorted({g for g, _, _ in items})
        with deadline(self.conn, self.deadline_s), self.conn.transaction(), self.conn.cursor() as cur:
            with cur.copy(_COPY) as copy:
                copy.write(copy_payload(items))
            # Serializes merges of this partition with any other drainer that
            # may still believe it holds the lease (a stalled one waking up).
            # Taken after the COPY: a client stopped mid-COPY keeps its backend
            # waiting for data beyond any timeout, and must not hold this lock.
            cur.execute(_LOCK, self.lock_key)
            for group in groups:
                if group == DELETE:
                    cur.execute(self._delete)
                else:
                    cur.execute(self._upsert_sql(columns[group]), (group,))
            # Checked under the advisory lock: a lease lost before this point
            # rolls the batch back; one lost after it cannot be taken over
            # until this transaction ends.
            if not self.still_leased():
                raise LeaseLost(
                    f"{self.schema.table.name} partition {self.lock_key[1]}: lease lost to another drainer before"
                    " COMMIT; this batch was rolled back, nothing older was written"
                )

    def _upsert_sql(self, columns: tuple[str, ...]) -> sql.Composed:
        query = self._upserts.get(columns)
        if query is not None:
            return query
        s = self.schema
        ident = sql.Identifier
        updates = [c for c in columns if c not in s.key]
        action: sql.Composable
        if updates:
            action = sql.SQL("DO UPDATE SET {}").format(
                sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(ident(c)) for c in updates)
            )
            version = s.table.version_column
            if version and version in columns:
                action += sql.SQL(" WHERE t.{0} IS NULL OR t.{0} < EXCLUDED.{0}").format(ident(version))
        else:
            action = sql.SQL("DO NOTHING")
        query = sql.SQL(
            "INSERT INTO {table} AS t ({cols}) SELECT {rcols} FROM syncwd_stage s"
            " CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, s.doc) r"
            " WHERE s.g = %s ON CONFLICT ({key}) {action}"
        ).format(
            table=s.ident,
            cols=sql.SQL(", ").join(map(ident, columns)),
            rcols=sql.SQL(", ").join(ident("r", c) for c in columns),
            key=sql.SQL(", ").join(map(ident, s.key)),
            action=action,
        )
        self._upserts[columns] = query
        return query

    def _delete_sql(self) -> sql.Composed:
        s = self.schema
        return sql.SQL(
            "DELETE FROM {table} AS t USING syncwd_stage s"
            " CROSS JOIN LATERAL jsonb_populate_record(NULL::{table}, s.doc) r"
            " WHERE s.g = {group} AND {match}"
        ).format(
            table=s.ident,
            group=sql.Literal(DELETE),
            match=sql.SQL(" AND ").join(sql.SQL("t.{0} = r.{0}").format(sql.Identifier(c)) for c in s.key),
        )
