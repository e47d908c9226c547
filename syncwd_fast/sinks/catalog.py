"""What the built-in sinks share: a connection per thread, each table's
schema read from the database's catalog (and read again when a record
carries a key that is no column, or a statement names a column that is
gone), a decoder per schema run ahead in the fetching thread, and the write
that ties them to the sink's own merge."""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from ..errors import SyncwdError
from ..table import Table
from .base import Batch, Sink, SinkOptions, Written

log = logging.getLogger("syncwd_fast")


class SchemaChanged(SyncwdError):
    """A column the merge names is gone: read the schema again and merge again."""


class Decoded(Protocol):
    """What a sink's decoder makes of a batch."""

    dead: list[tuple[str, str]]
    unknown: bool
    schema: Any


class Merged(Protocol):
    """What a sink's merge says of a batch."""

    dead: list[tuple[str, str]]
    skipped: list[str]
    unchanged: int


class CatalogSink(Sink):
    """A raw sink over a database whose catalog describes its tables.
    Subclasses say how to connect, read a schema, decode and merge."""

    raw = True

    def __init__(self, dsn: str, options: SinkOptions | None = None) -> None:
        self.dsn = dsn
        self.options = options or SinkOptions()
        # A stalled drainer's open transaction holds the partition's lock: the
        # server ends it (statement or idle timeout) soon after its lease is
        # gone, and a successor waits on the lock a little longer.
        self.hold_s = max(2 * self.options.lease_seconds, 5.0)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Any] = []
        self._schemas: dict[str, Any] = {}
        self._decoders: dict[str, Any] = {}

    # --- what each database does its own way ------------------------------------

    def _connect(self) -> Any:
        """A new connection; ConfigurationError for what no retry can fix."""
        raise NotImplementedError

    def _alive(self, conn: Any) -> bool:
        raise NotImplementedError

    def _load_schema(self, conn: Any, table: Table) -> Any:
        raise NotImplementedError

    def _new_decoder(self, schema: Any) -> Any:
        raise NotImplementedError

    def _merge(self, conn: Any, batch: Batch, decoded: Any) -> Merged:
        raise NotImplementedError

    # --- connections ----------------------------------------------------------

    def connection(self) -> Any:
        """This thread's connection, reopened if the last one broke."""
        conn = getattr(self._local, "conn", None)
        if conn is None or not self._alive(conn):
            if conn is not None:
                self._close(conn)
            self._local.mergers = {}
            conn = self._local.conn = self._connect()
            with self._lock:
                self._connections.append(conn)
        return conn

    @staticmethod
    def _close(conn: Any) -> None:
        try:
            conn.close()
        except Exception:  # a link already gone
            pass

    def open(self) -> None:
        self.connection()

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                self._close(conn)
            self._connections.clear()
        self._local = threading.local()

    # --- tables ---------------------------------------------------------------

    def check(self, table: Table) -> None:
        self._set_schema(self._load_schema(self.connection(), table))

    def schema(self, table: Table) -> Any:
        with self._lock:
            schema = self._schemas.get(table.name)
        if schema is None or schema.table != table:
            self.check(table)
            with self._lock:
                schema = self._schemas[table.name]
        return schema

    def _set_schema(self, schema: Any) -> None:
        with self._lock:
            if self._schemas.get(schema.table.name) != schema:
                self._schemas[schema.table.name] = schema
                self._decoders[schema.table.name] = self._new_decoder(schema)

    def _reload(self, conn: Any, table: Table) -> bool:
        """Read the table's schema again (a column may have been added or
        dropped since the drain started); True when it changed."""
        schema = self._load_schema(conn, table)
        if schema == self.schema(table):
            return False
        log.info(
            "%s: the table's columns changed; merging with the new schema", table.name, extra={"table": table.name}
        )
        self._set_schema(schema)
        return True

    # --- batches --------------------------------------------------------------

    def _decode(self, batch: Batch) -> Any:
        self.schema(batch.table)
        with self._lock:
            decoder = self._decoders[batch.table.name]
        return decoder.decode(batch.ids, batch.values, batch.recreated)

    def prepare(self, batch: Batch) -> None:
        batch.state = self._decode(batch)

    def write(self, batch: Batch) -> Written:
        conn = self.connection()
        decoded: Decoded = batch.state if batch.state is not None else self._decode(batch)
        # A key that is not a column may be one added since the schema was read:
        # read it again before such a record's value is acked without it.
        if decoded.unknown:
            self._reload(conn, batch.table)
        if decoded.schema is not self.schema(batch.table):  # decoded (ahead) against the schema before a reload
            decoded = self._decode(batch)
        for attempt in range(3):
            try:
                merged = self._merge(conn, batch, decoded)
                break
            except SchemaChanged:  # a column the statements name was dropped
                if attempt == 2 or not self._reload(conn, batch.table):
                    raise
                decoded = self._decode(batch)
        rejected = dict(decoded.dead)
        rejected.update(merged.dead)
        return Written(skipped=merged.skipped, rejected=rejected, unchanged=merged.unchanged)
