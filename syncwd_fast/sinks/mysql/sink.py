"""The built-in MariaDB/MySQL sink (``mysql://`` or ``mariadb://`` DSNs)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pymysql

from ...errors import ConfigurationError
from ...masking import mask
from ...table import Table
from ..base import Batch, Sink, SinkOptions, Written
from .connection import connect, max_packet, parse_dsn
from .faults import configuration_problem, is_data_error, is_transient
from .merge import LANDING_TABLE, Merger, SchemaChanged, lock_name
from .render import Decoded, Decoder
from .schema import MySQLSchema, load_schema

log = logging.getLogger("syncwd_fast")


class MySQLSink(Sink):
    """Batches staged and merged in one transaction each, under the
    partition's ``GET_LOCK`` and a lease check before COMMIT; columns, types
    and keys from information_schema, read again when a column appears."""

    raw = True  # numbers keep their own text: decoded here, not by the core

    def __init__(self, dsn: str, options: SinkOptions | None = None) -> None:
        self.dsn = dsn
        self.database = parse_dsn(dsn)["database"]  # a malformed DSN is said at once
        self.options = options or SinkOptions()
        self.hold_s = max(2 * self.options.lease_seconds, 5.0)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._schemas: dict[str, MySQLSchema] = {}
        self._decoders: dict[str, Decoder] = {}

    # --- connections ----------------------------------------------------------

    def connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or not conn.open:
            self._local.mergers = {}
            try:
                conn = connect(self.dsn, statement_timeout_s=self.hold_s, lock_timeout_s=self.hold_s)
            except pymysql.err.MySQLError as exc:
                problem = configuration_problem(exc)
                if problem:
                    raise ConfigurationError(mask(problem)) from exc
                raise
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def open(self) -> None:
        conn = self.connection()
        try:
            with conn.cursor() as cur:
                # Transactions that replace an old row note a token here, so a
                # replay after a crash can tell whether that one committed.
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {LANDING_TABLE} (token CHAR(32) PRIMARY KEY,"
                    " at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB"
                )
                cur.execute(f"DELETE FROM {LANDING_TABLE} WHERE at < NOW() - INTERVAL 30 DAY")
            conn.commit()
        except pymysql.err.MySQLError as exc:  # e.g. no CREATE privilege in the DSN's database
            problem = configuration_problem(exc)
            if problem:
                raise ConfigurationError(f"{mask(problem)} (creating {LANDING_TABLE})") from exc
            raise

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except pymysql.err.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()

    def is_transient(self, exc: BaseException) -> bool:
        return is_transient(exc) or super().is_transient(exc)

    def blames_records(self, exc: BaseException) -> bool:
        # The merge pins data errors on their records itself.
        return not isinstance(exc, pymysql.err.MySQLError) or is_data_error(exc)

    # --- tables ---------------------------------------------------------------

    def check(self, table: Table) -> None:
        conn = self.connection()
        self._set_schema(load_schema(conn, table, self.database))

    def schema(self, table: Table) -> MySQLSchema:
        with self._lock:
            schema = self._schemas.get(table.name)
        if schema is None or schema.table != table:
            self.check(table)
            with self._lock:
                schema = self._schemas[table.name]
        return schema

    def _set_schema(self, schema: MySQLSchema) -> None:
        with self._lock:
            if self._schemas.get(schema.table.name) != schema:
                self._schemas[schema.table.name] = schema
                self._decoders[schema.table.name] = Decoder(schema, self.options.strict)

    def _reload(self, conn: Any, table: Table) -> bool:
        schema = load_schema(conn, table, self.database)
        if schema == self.schema(table):
            return False
        log.info("%s: the table's columns changed; merging with the new schema", table.name)
        self._set_schema(schema)
        return True

    def _decoder(self, table: Table) -> Decoder:
        self.schema(table)
        with self._lock:
            return self._decoders[table.name]

    # --- batches --------------------------------------------------------------

    def prepare(self, batch: Batch) -> None:
        batch.state = self._decoder(batch.table).decode(batch.ids, batch.values, batch.recreated)

    def _decode(self, batch: Batch) -> Decoded:
        return self._decoder(batch.table).decode(batch.ids, batch.values, batch.recreated)

    def _merger(self, conn: Any, table: Table) -> Merger:
        mergers: dict[str, Merger] = self._local.mergers
        schema = self.schema(table)
        merger = mergers.get(table.name)
        if merger is None:
            merger = mergers[table.name] = Merger(conn, schema, self.hold_s + 5, max_packet(conn))
        elif merger.schema != schema:
            merger.set_schema(schema)
        return merger

    def _landed(self, conn: Any, tokens: list[str]) -> set[str]:
        with conn.cursor() as cur:
            cur.execute(f"SELECT token FROM {LANDING_TABLE} WHERE token IN ({', '.join(['%s'] * len(tokens))})", tokens)
            return {str(row[0]) for row in cur.fetchall()}

    def write(self, batch: Batch) -> Written:
        conn = self.connection()
        decoded: Decoded = batch.state if isinstance(batch.state, Decoded) else self._decode(batch)
        if decoded.unknown:  # a key that is no column may be one added since the schema was read
            self._reload(conn, batch.table)
        if decoded.schema is not self.schema(batch.table):
            decoded = self._decode(batch)
        lock = lock_name(batch.prefix, batch.table.name, batch.partition)
        for attempt in range(3):
            try:
                merged = self._merger(conn, batch.table).merge(
                    decoded, lock, batch.still_leased, batch.note_landing, lambda tokens: self._landed(conn, tokens)
                )
                break
            except SchemaChanged:  # a column the statements name is gone
                if attempt == 2 or not self._reload(conn, batch.table):
                    raise
                decoded = self._decode(batch)
        rejected = dict(decoded.dead)
        rejected.update(merged.dead)
        return Written(skipped=merged.skipped, rejected=rejected, unchanged=merged.unchanged)
