"""The built-in PostgreSQL sink: each batch decoded (the C speedup, or its
pure-Python twin) into the text COPY of a typed stage and merged in one
transaction (merge.py), under the partition's advisory lock and a lease
check before COMMIT."""

from __future__ import annotations

import zlib
from typing import Any

import psycopg

from ...connection import connect, deadline
from ...errors import ConfigurationError
from ...faults import configuration_problem
from ...masking import mask
from ...table import Table
from ..base import Batch, SinkOptions
from ..catalog import CatalogSink
from .decode import Decoded, Decoder
from .merge import Merger, MergeResult
from .schema import TableSchema, load_schema


def lock_key(prefix: str, table: str, number: int) -> tuple[int, int]:
    """Two int4 advisory-lock keys: (hash of prefix and table, partition)."""
    h = zlib.crc32(f"{prefix}:{table}".encode())
    return (h - (1 << 32) if h >= (1 << 31) else h, number)


class PostgresSink(CatalogSink):
    """``COPY`` into a temp stage, then ``DELETE ... USING`` and ``INSERT ...
    ON CONFLICT`` per column group, one transaction per batch. Columns, types
    and keys come from pg_catalog; a column added mid-run is read again."""

    raw = True  # decodes the stored bytes itself, in C where built

    def __init__(self, dsn: str, options: SinkOptions | None = None) -> None:
        super().__init__(dsn, options)
        self.deadline_s = 2 * self.hold_s + 10  # a lock wait and a statement, each at their timeout

    def _connect(self) -> psycopg.Connection[Any]:
        hold = self.hold_s
        try:
            return connect(self.dsn, statement_timeout_s=hold, idle_in_transaction_s=hold, lock_timeout_s=hold + 5)
        except psycopg.ProgrammingError as exc:  # a malformed DSN, not a fault
            raise ConfigurationError(f"invalid PostgreSQL DSN: {mask(str(exc).strip())}") from exc
        except psycopg.Error as exc:  # a database that does not exist, a login refused: not a fault either
            problem = configuration_problem(exc)
            if problem:
                raise ConfigurationError(mask(problem)) from exc
            raise

    def _alive(self, conn: psycopg.Connection[Any]) -> bool:
        return not (conn.closed or conn.broken)

    def _load_schema(self, conn: psycopg.Connection[Any], table: Table) -> TableSchema:
        with deadline(conn, self.deadline_s):
            return load_schema(conn, table)

    def _new_decoder(self, schema: TableSchema) -> Decoder:
        return Decoder(schema, self.options.strict)

    def blames_records(self, exc: BaseException) -> bool:
        # The merge pins data errors on their records itself: a database error
        # that reaches here is the server's, the link's or the schema's.
        return not isinstance(exc, psycopg.Error)

    def _merge(self, conn: psycopg.Connection[Any], batch: Batch, decoded: Decoded) -> MergeResult:
        mergers: dict[tuple[str, int], Merger] = self._local.mergers
        schema = self.schema(batch.table)
        merger = mergers.get((batch.table.name, batch.partition))
        if merger is None:
            merger = mergers[(batch.table.name, batch.partition)] = Merger(
                conn,
                schema,
                lock_key(batch.prefix, batch.table.name, batch.partition),
                batch.still_leased,
                self.deadline_s,
            )
        elif merger.schema != schema:
            merger.set_schema(schema)
        merger.still_leased = batch.still_leased
        merger.landing = lambda xid, marks: batch.note_landing(str(xid), marks)
        return merger.merge(decoded, ids=False)  # write() reads only what was not written
