"""The built-in MariaDB/MySQL sink (``mysql://`` or ``mariadb://`` DSNs)."""

from __future__ import annotations

from typing import Any

import pymysql

from ...errors import ConfigurationError
from ...masking import mask
from ...table import Table
from ..base import Batch, SinkOptions
from ..catalog import CatalogSink
from .connection import connect, max_packet, parse_dsn
from .faults import configuration_problem, is_data_error, is_transient
from .merge import LANDING_TABLE, Merger, MergeResult, lock_name
from .render import Decoded, Decoder
from .schema import MySQLSchema, load_schema


class MySQLSink(CatalogSink):
    """Batches staged and merged in one transaction each, under the
    partition's ``GET_LOCK`` and a lease check before COMMIT; columns, types
    and keys from information_schema, read again when a column appears."""

    raw = True  # numbers keep their own text: decoded here, not by the core

    def __init__(self, dsn: str, options: SinkOptions | None = None) -> None:
        self.database = parse_dsn(dsn)["database"]  # a malformed DSN is said at once
        super().__init__(dsn, options)

    def _connect(self) -> Any:
        try:
            return connect(self.dsn, statement_timeout_s=self.hold_s, lock_timeout_s=self.hold_s)
        except pymysql.err.MySQLError as exc:
            problem = configuration_problem(exc)
            if problem:
                raise ConfigurationError(mask(problem)) from exc
            raise

    def _alive(self, conn: Any) -> bool:
        return bool(conn.open)

    def _load_schema(self, conn: Any, table: Table) -> MySQLSchema:
        return load_schema(conn, table, self.database)

    def _new_decoder(self, schema: MySQLSchema) -> Decoder:
        return Decoder(schema, self.options.strict)

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

    def is_transient(self, exc: BaseException) -> bool:
        return is_transient(exc) or super().is_transient(exc)

    def blames_records(self, exc: BaseException) -> bool:
        # The merge pins data errors on their records itself.
        return not isinstance(exc, pymysql.err.MySQLError) or is_data_error(exc)

    def _landed(self, conn: Any, tokens: list[str]) -> set[str]:
        with conn.cursor() as cur:
            cur.execute(f"SELECT token FROM {LANDING_TABLE} WHERE token IN ({', '.join(['%s'] * len(tokens))})", tokens)
            return {str(row[0]) for row in cur.fetchall()}

    def _merge(self, conn: Any, batch: Batch, decoded: Decoded) -> MergeResult:
        mergers: dict[str, Merger] = self._local.mergers
        schema = self.schema(batch.table)
        merger = mergers.get(batch.table.name)
        if merger is None:
            merger = mergers[batch.table.name] = Merger(conn, schema, self.hold_s + 5, max_packet(conn))
        elif merger.schema != schema:
            merger.set_schema(schema)
        return merger.merge(
            decoded,
            lock_name(batch.prefix, batch.table.name, batch.partition),
            batch.still_leased,
            batch.note_landing,
            lambda tokens: self._landed(conn, tokens),
        )
