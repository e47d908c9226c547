"""The built-in PostgreSQL sink: each batch decoded (the C speedup, or its
pure-Python twin) into the text COPY of a typed stage and merged in one
transaction (merge.py), under the partition's advisory lock and a lease
check before COMMIT."""

from __future__ import annotations

import logging
import threading
import zlib
from typing import Any

import psycopg

from ...connection import connect, deadline
from ...errors import ConfigurationError
from ...faults import configuration_problem
from ...masking import mask
from ...table import Table
from ..base import Batch, Sink, SinkOptions, Written
from .decode import Decoded, Decoder
from .merge import Merger, SchemaChanged
from .schema import TableSchema, load_schema

log = logging.getLogger("syncwd_fast")


def lock_key(prefix: str, table: str, number: int) -> tuple[int, int]:
    """Two int4 advisory-lock keys: (hash of prefix and table, partition)."""
    h = zlib.crc32(f"{prefix}:{table}".encode())
    return (h - (1 << 32) if h >= (1 << 31) else h, number)


class PostgresSink(Sink):
    """``COPY`` into a temp stage, then ``DELETE ... USING`` and ``INSERT ...
    ON CONFLICT`` per column group, one transaction per batch. Columns, types
    and keys come from pg_catalog; a column added mid-run is read again."""

    raw = True  # decodes the stored bytes itself, in C where built

    def __init__(self, dsn: str, options: SinkOptions | None = None) -> None:
        self.dsn = dsn
        self.options = options or SinkOptions()
        # A stalled drainer's open transaction holds the partition's advisory
        # lock: the server ends it (statement or idle timeout) soon after its
        # lease is gone, and a successor waits on the lock a little longer.
        self.hold_s = max(2 * self.options.lease_seconds, 5.0)
        self.deadline_s = 2 * self.hold_s + 10  # a lock wait and a statement, each at their timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[psycopg.Connection[Any]] = []
        self._schemas: dict[str, TableSchema] = {}
        self._decoders: dict[str, Decoder] = {}

    # --- connections ----------------------------------------------------------

    def connection(self) -> psycopg.Connection[Any]:
        """This thread's connection, reopened if the last one broke."""
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            self._local.mergers = {}
            hold = self.hold_s
            try:
                conn = connect(self.dsn, statement_timeout_s=hold, idle_in_transaction_s=hold, lock_timeout_s=hold + 5)
            except psycopg.ProgrammingError as exc:  # a malformed DSN, not a fault
                raise ConfigurationError(f"invalid PostgreSQL DSN: {mask(str(exc).strip())}") from exc
            except psycopg.Error as exc:  # a database that does not exist, a login refused: not a fault either
                problem = configuration_problem(exc)
                if problem:
                    raise ConfigurationError(mask(problem)) from exc
                raise
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def open(self) -> None:
        self.connection()

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # --- tables ---------------------------------------------------------------

    def check(self, table: Table) -> None:
        conn = self.connection()
        with deadline(conn, self.deadline_s):
            schema = load_schema(conn, table)
        self._set_schema(schema)

    def schema(self, table: Table) -> TableSchema:
        with self._lock:
            schema = self._schemas.get(table.name)
        if schema is None or schema.table != table:
            self.check(table)
            with self._lock:
                schema = self._schemas[table.name]
        return schema

    def _set_schema(self, schema: TableSchema) -> None:
        with self._lock:
            if self._schemas.get(schema.table.name) != schema:
                self._schemas[schema.table.name] = schema
                self._decoders[schema.table.name] = Decoder(schema, self.options.strict)

    def _decoder(self, table: Table) -> Decoder:
        self.schema(table)
        with self._lock:
            return self._decoders[table.name]

    def _reload(self, conn: psycopg.Connection[Any], table: Table) -> bool:
        """Read the table's schema again (a column may have been added or
        dropped since the drain started); True when it changed."""
        with deadline(conn, self.deadline_s):
            schema = load_schema(conn, table)
        if schema == self.schema(table):
            return False
        log.info("%s: the table's columns changed; merging with the new schema", table.name)
        self._set_schema(schema)
        return True

    def blames_records(self, exc: BaseException) -> bool:
        # The merge pins data errors on their records itself: a database error
        # that reaches here is the server's, the link's or the schema's.
        return not isinstance(exc, psycopg.Error)

    # --- batches --------------------------------------------------------------

    def prepare(self, batch: Batch) -> None:
        batch.state = self._decoder(batch.table).decode(batch.ids, batch.values, batch.recreated)

    def _decode(self, batch: Batch) -> Decoded:
        return self._decoder(batch.table).decode(batch.ids, batch.values, batch.recreated)

    def _merger(self, conn: psycopg.Connection[Any], batch: Batch) -> Merger:
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
        return merger

    def write(self, batch: Batch) -> Written:
        conn = self.connection()
        decoded: Decoded = batch.state if isinstance(batch.state, Decoded) else self._decode(batch)
        # A key that is not a column may be one added since the schema was read:
        # read it again before such a record's value is acked without it.
        if decoded.unknown:
            self._reload(conn, batch.table)
        if decoded.schema is not self.schema(batch.table):  # decoded (ahead) against the schema before a reload
            decoded = self._decode(batch)
        for attempt in range(3):
            try:
                merged = self._merger(conn, batch).merge(decoded)
                break
            except SchemaChanged:  # a column the statements name was dropped
                if attempt == 2 or not self._reload(conn, batch.table):
                    raise
                decoded = self._decode(batch)
        rejected = dict(decoded.dead)
        rejected.update(merged.dead)
        return Written(skipped=merged.skipped, rejected=rejected, unchanged=merged.unchanged)
