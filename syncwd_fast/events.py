"""What a drain tells an observer as it goes: ``FastDrainer(observer=...)``.

The engine calls each method at most once per batch (never per record), from
the drain's worker threads (``workers`` partitions at once, each acking on a
thread of its own): an observer guards its own state. An observer that raises
is logged and the drain goes on: watching a drain must never stop it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .partition import PartitionResult
    from .report import DrainReport

log = logging.getLogger("syncwd_fast")


@dataclass(frozen=True)
class BatchDone:
    """One batch of a partition, merged and acked: what became of its
    records. ``merge_seconds`` is None for counts settled after the batches
    (a dead-letter call whose reply was lost, confirmed at the partition's
    end): no merge of its own. The counts of every BatchDone of a drain add up
    to its report's."""

    table: str
    partition: int
    upserted: int
    deleted: int
    dead_lettered: int
    skipped: int
    merge_seconds: float | None

    @property
    def rows(self) -> int:
        """Records the batch took out of Redis, whatever their outcome."""
        return self.upserted + self.deleted + self.dead_lettered + self.skipped


class DrainObserver:
    """Override the methods you need; each does nothing here."""

    def drain_started(self, tables: Mapping[str, int]) -> None:
        """A drain begins with these tables (those it found registered and
        checked in their destination), each with its partition count."""

    def run_started(self, table: str, partition: int, run: str, size: int, adopted: bool) -> None:
        """A partition's run begins: ``size`` ids to go through (an adopted
        run: those not read yet, plus its in-flight records to redo). A
        partition may go through two runs in one drain: an adopted one, then a
        new one of what was written since."""

    def batch_done(self, batch: BatchDone) -> None:
        """A batch landed (see BatchDone)."""

    def retry(self, table: str | None, what: str) -> None:
        """A fault is retried: ``what`` failed (None: no table's own, such as
        reading the registry or connecting)."""

    def partition_finished(self, table: str, partition: int, result: PartitionResult) -> None:
        """A partition is done, drained, busy, interrupted or failed."""

    def drain_finished(self, report: DrainReport) -> None:
        """The drain is over; ``report`` is what ``drain()`` returns."""


class Observers(DrainObserver):
    """Several observers as one; an observer that raises is logged (once per
    method) and skipped."""

    def __init__(self, *observers: DrainObserver | None) -> None:
        self.observers = [o for o in observers if o is not None]
        self._failed: set[tuple[int, str]] = set()

    def _each(self, method: str, *args: object) -> None:
        for observer in self.observers:
            try:
                getattr(observer, method)(*args)
            except Exception as exc:
                if (id(observer), method) not in self._failed:
                    self._failed.add((id(observer), method))
                    log.warning(
                        "observer %s.%s failed (the drain goes on): %s: %s",
                        type(observer).__name__,
                        method,
                        type(exc).__name__,
                        exc,
                    )

    def drain_started(self, tables: Mapping[str, int]) -> None:
        self._each("drain_started", tables)

    def run_started(self, table: str, partition: int, run: str, size: int, adopted: bool) -> None:
        self._each("run_started", table, partition, run, size, adopted)

    def batch_done(self, batch: BatchDone) -> None:
        self._each("batch_done", batch)

    def retry(self, table: str | None, what: str) -> None:
        self._each("retry", table, what)

    def partition_finished(self, table: str, partition: int, result: PartitionResult) -> None:
        self._each("partition_finished", table, partition, result)

    def drain_finished(self, report: DrainReport) -> None:
        self._each("drain_finished", report)
