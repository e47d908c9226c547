"""Sinks written the way a team would write its own, to prove the sink
contract: an in-memory dict, and a dict kept in a JSON file (so that it
outlives a drain killed with SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from syncwd_fast import RejectedRecords
from syncwd_fast.sinks import Batch, Sink, SinkOptions


class DictSink(Sink):
    """Rows in a dict keyed by id; ``deliveries`` counts each id written.

    ``reject(record) -> reason | None`` refuses records (RejectedRecords);
    ``explode(record) -> Exception | None`` raises it while writing;
    ``before_commit(batch)`` runs before the lease check.
    """

    def __init__(
        self,
        reject: Callable[[Any], str | None] | None = None,
        explode: Callable[[Any], BaseException | None] | None = None,
        before_commit: Callable[[Batch], None] | None = None,
    ) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.deliveries: dict[str, int] = {}
        self.batches: list[tuple[str, int, int]] = []
        self.reject = reject
        self.explode = explode
        self.before_commit = before_commit
        self.lock = threading.Lock()

    def write(self, batch: Batch) -> None:
        staged: dict[str, dict[str, Any] | None] = {}
        refused: dict[str, str] = {}
        for record in batch.upserts:
            problem = self.explode(record) if self.explode else None
            if problem is not None:
                raise problem
            reason = self.reject(record) if self.reject else None
            if reason:
                refused[record.id] = reason
                continue
            staged[record.id] = record.value
        for record in batch.deletes:
            staged[record.id] = None
        if self.before_commit:
            self.before_commit(batch)
        batch.check_lease()  # right before "COMMIT": a drainer that lost its lease writes nothing
        with self.lock:
            for rid, value in staged.items():
                self.deliveries[rid] = self.deliveries.get(rid, 0) + 1
                if value is None:
                    self.rows.pop(rid, None)
                elif rid in batch.replace:
                    self.rows[rid] = dict(value)  # a new row after a delete: replaced whole
                else:
                    self.rows[rid] = {**self.rows.get(rid, {}), **value}  # missing keys keep their values
            self.batches.append((batch.table.name, batch.partition, len(staged)))
        if refused:
            raise RejectedRecords(refused)


class FileDictSink(Sink):
    """The same dict kept in a JSON file, replaced atomically on each write
    (write, fsync, rename): durable when ``write`` returns. With
    ``kill_after`` set, the process kills itself with SIGKILL once that many
    batches are durable: between the sink's return and the ack."""

    def __init__(self, path: str, kill_after: int = 0) -> None:
        self.path = path
        self.kill_after = kill_after
        self.written = 0
        self.lock = threading.Lock()

    def load(self) -> dict[str, Any]:
        if not os.path.exists(self.path):
            return {"rows": {}, "deliveries": {}}
        with open(self.path) as f:
            return json.load(f)  # type: ignore[no-any-return]

    def write(self, batch: Batch) -> None:
        with self.lock:
            state = self.load()
            for record in batch.upserts:
                old = {} if record.id in batch.replace else state["rows"].get(record.id, {})
                state["rows"][record.id] = {**old, **record.value}
                state["deliveries"][record.id] = state["deliveries"].get(record.id, 0) + 1
            for record in batch.deletes:
                state["rows"].pop(record.id, None)
                state["deliveries"][record.id] = state["deliveries"].get(record.id, 0) + 1
            batch.check_lease()
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            self.written += 1
            if self.kill_after and self.written >= self.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)


def file_sink(dsn: str, options: SinkOptions) -> FileDictSink:
    """The factory ``--sink TABLE=tests.sinks_for_tests:file_sink`` calls:
    the file and the kill point come from the environment."""
    return FileDictSink(os.environ["SYNCWD_TEST_SINK_FILE"], int(os.environ.get("SYNCWD_TEST_SINK_KILL_AFTER", "0")))


def not_a_sink(dsn: str, options: SinkOptions) -> object:
    return object()
