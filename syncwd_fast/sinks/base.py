"""The sink interface: where a drained batch goes.

The drain's core (partition.py) pops a batch of records from Redis, hands it
to the table's sink, and acks the records once the sink has returned: a sink
returns only when the batch is durable. What happens in between is the
sink's: the built-in ones merge into PostgreSQL (``sinks.postgres``) or
MariaDB/MySQL (``sinks.mysql``); a team's own sink may write anywhere, as
the Go original's per-model ``SyncToDB()`` did.

The contract, whatever the sink:

- ``write(batch)`` returns when every record of the batch is durable, except
  those it names as refused (``RejectedRecords``, or ``Written.rejected``):
  those are dead-lettered with the reason, the rest acked.
- A batch may be delivered again (a drainer killed between the sink's return
  and the ack): ``write`` must be idempotent. An upsert writes the record's
  latest state whole (the columns it carries), a delete removes the row if it
  is there; doing either twice changes nothing.
- Right before it commits, a sink calls ``batch.check_lease()``, which raises
  ``LeaseLost`` when another drainer took the partition over; the built-in
  sinks do it under a database lock held to COMMIT, so a stalled drainer that
  wakes up late cannot overwrite newer values. The drain checks the lease
  again (in Redis, atomically) before it acks.
- Any other exception is a fault. One the sink deems transient
  (``Sink.is_transient``: links, timeouts, a server restarting) is retried
  with backoff, then the drain stops with exit code 3, nothing acked. Any
  other is looked for in the records: the batch is written again in halves,
  and a record that fails alone while others land is dead-lettered with the
  exception as its reason, so no single record can hold its partition up.
  When no part of the batch lands, the fault is the sink's: retried, then
  exit code 3. A small batch (16 records at most) whose every record fails
  alone cannot tell the two apart: it is retried, and on the last try its
  records are dead-lettered.
- The sink gets a copy of the batch: it may consume or change its lists.

Learned from Kafka Connect's ``SinkTask`` (records are committed only after
the task has flushed them) and from SQLAlchemy's dialects (one interface,
each destination's own SQL behind it).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import LeaseLost
from ..faults import is_transient
from ..table import Table


class Record(NamedTuple):
    """One record of a batch: its id (as ``dead-letter list`` shows it) and
    its value: an upsert's latest state as a dict of column -> JSON value
    (only the columns the record carries), or a delete's key columns."""

    id: str
    value: dict[str, Any]


@dataclass
class SinkOptions:
    """What a sink factory is given besides the DSN."""

    strict: bool = False  # JSON keys that are not columns dead-letter their record
    lease_seconds: float = 30.0  # a statement may take up to twice this before the server ends it


@dataclass
class Batch:
    """One batch of one partition of one table, handed to ``Sink.write``.

    A sink that is not ``raw`` reads ``upserts`` and ``deletes``; a raw sink
    reads ``ids`` and ``values`` as Redis stores them (a JSON object, or
    ``~`` and the key columns' JSON for a delete; None for a value that
    vanished) and decodes them itself, refusing what it cannot read.
    """

    table: Table
    partition: int
    prefix: str = ""  # the Redis key prefix: with table and partition, names what a lock fences
    upserts: list[Record] = field(default_factory=list)
    deletes: list[Record] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    # id -> generation mark: records that are a new row after a delete. The
    # row they replace is deleted first, so columns they lack take their
    # defaults. A mark "generation@token" names the transaction that replaced
    # the row before (``note_landing``): if it committed, merge as an update.
    recreated: dict[str, str] = field(default_factory=dict)
    # For the sink's own use: what ``prepare`` made of the batch ahead of ``write``.
    state: Any = None
    _lease: Callable[[], bool] | None = field(default=None, repr=False)
    _landing: Callable[[str, dict[str, str]], object] | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[str, ...]:
        return self.table.key_columns

    @property
    def replace(self) -> frozenset[str]:
        """Ids of upserts that are a new row after a delete: replace the old
        row whole rather than update it."""
        return frozenset(self.recreated)

    def check_lease(self) -> None:
        """Raise LeaseLost unless this drainer still holds the partition's
        lease (and renew it). Call it right before committing."""
        if self._lease is not None and not self._lease():
            raise LeaseLost(
                f"{self.table.name} partition {self.partition}: lease lost to another drainer before COMMIT;"
                " this batch must roll back"
            )

    def still_leased(self) -> bool:
        """As ``check_lease``, as a bool."""
        return self._lease is None or bool(self._lease())

    def note_landing(self, token: str, generations: Mapping[str, str]) -> None:
        """Before COMMIT, note that the transaction ``token`` (which must not
        contain "@") replaces the old rows of these new rows after a delete
        (id -> generation as in ``recreated``). A drainer that gets the batch
        again after a crash finds "generation@token" in ``recreated`` and asks
        the destination whether ``token`` committed."""
        if self._landing is not None and generations:
            self._landing(token, dict(generations))

    def subset(self, ids: Collection[str]) -> Batch:
        """The same batch narrowed to ``ids`` (to look for a bad record)."""
        keep = set(ids)
        raw = [(i, v) for i, v in zip(self.ids, self.values) if i in keep]
        return Batch(
            self.table,
            self.partition,
            self.prefix,
            upserts=[r for r in self.upserts if r.id in keep],
            deletes=[r for r in self.deletes if r.id in keep],
            ids=[i for i, _ in raw],
            values=[v for _, v in raw],
            recreated={i: m for i, m in self.recreated.items() if i in keep},
            _lease=self._lease,
            _landing=self._landing,
        )

    def record_ids(self) -> list[str]:
        """Every id in the batch, in order."""
        if self.ids:
            return list(self.ids)
        return [r.id for r in self.upserts] + [r.id for r in self.deletes]

    def copy(self) -> Batch:
        """The batch with lists of its own: what a sink is handed, so that one
        consuming or changing them cannot change what the drain acks."""
        return Batch(
            self.table,
            self.partition,
            self.prefix,
            upserts=list(self.upserts),
            deletes=list(self.deletes),
            ids=list(self.ids),
            values=list(self.values),
            recreated=dict(self.recreated),
            state=self.state,
            _lease=self._lease,
            _landing=self._landing,
        )


@dataclass
class Written:
    """What ``Sink.write`` may return (None means every record was written)."""

    # Not written, on purpose: the destination holds a newer version (the
    # version column). Acked, but their Redis values keep no TTL.
    skipped: Collection[str] = ()
    # Refused: id -> reason; dead-lettered. Every other record is durable.
    rejected: Mapping[str, str] = field(default_factory=dict)
    # Of the upserts, how many changed nothing (a record of key columns only
    # whose row exists): durable, counted as skipped.
    unchanged: int = 0

    def __post_init__(self) -> None:
        # Ids as the batch has them (a sink may name them by int): an id not
        # recognized would otherwise be acked as written.
        self.rejected = {str(k): str(v) for k, v in self.rejected.items()}
        self.skipped = [str(i) for i in self.skipped]


class Sink:
    """Where a table's batches go. Subclass it and implement ``write``.

    One sink may serve several partitions at once (``workers`` > 1 calls
    ``write`` from several threads, each with a different partition) and
    serves many drains in a row (``schedule``): ``close`` ends a drain.
    """

    #: True: ``write`` gets ``Batch.ids`` / ``Batch.values`` as stored and
    #: decodes them itself (the PostgreSQL sink, for its C path).
    raw: bool = False

    def open(self) -> None:
        """Once per drain, before any table: connect, so that a destination
        that cannot work stops the drain at once (raise ConfigurationError)."""

    def check(self, table: Table) -> None:
        """Once per drain and table, before its partitions: raise
        ConfigurationError (TableMissing) if the table cannot be written; its
        records then wait in Redis while the other tables drain."""

    def prepare(self, batch: Batch) -> None:
        """Work on a batch ahead of ``write``, in the thread that fetches the
        next batch while the current one is written (decoding, rendering).
        Its result goes in ``batch.state``."""

    def write(self, batch: Batch) -> Written | None:
        """Make the batch durable; see the module's contract."""
        raise NotImplementedError

    def is_transient(self, exc: BaseException) -> bool:
        """Whether a retry of the whole batch may succeed (a link, a timeout,
        a server restarting) rather than a record being at fault."""
        return isinstance(exc, (OSError, TimeoutError)) or is_transient(exc)

    def blames_records(self, exc: BaseException) -> bool:
        """Whether an exception ``write`` raised (not a transient one) may be
        some record's fault, so worth looking for in halves of the batch. A
        sink that isolates bad records itself says False for its own errors."""
        return True

    def close(self) -> None:
        """The drain is over: release connections (``open`` comes again for
        the next)."""


SinkFactory = Callable[[str, SinkOptions], Sink]
