"""Draining one partition: lease, snapshot, then pop -> decode -> merge -> ack
batch after batch, the next batch fetched from Redis while PostgreSQL merges
the current one."""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors
import redis.exceptions

from . import scripts
from .decode import Decoded, Decoder
from .errors import DrainFault
from .merge import Merger, MergeResult
from .schema import TableSchema

log = logging.getLogger("syncwd_fast")

# Faults worth retrying: the link or the server, never the data.
TRANSIENT = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.TryAgainError,
    psycopg.OperationalError,
    psycopg.InterfaceError,  # a connection closed under us
    psycopg.errors.IdleInTransactionSessionTimeout,  # the server ended a stalled session
)


@dataclass
class Options:
    prefix: str
    batch: int
    lease_ms: int
    strict: bool
    retries: int
    backoff: float
    pg_deadline_s: float  # the longest a merge transaction may take before its link is deemed dead
    on_batch: Callable[[str, int, int], None] | None = None


@dataclass
class PartitionResult:
    upserted: int = 0
    deleted: int = 0
    dead_lettered: int = 0
    busy: bool = False


def lock_key(prefix: str, table: str, number: int) -> tuple[int, int]:
    """Two int4 advisory-lock keys: (hash of prefix and table, partition)."""
    h = zlib.crc32(f"{prefix}:{table}".encode())
    return (h - (1 << 32) if h >= (1 << 31) else h, number)


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


class PartitionDrain:
    def __init__(
        self,
        redis_client: Any,
        connection: Callable[[], psycopg.Connection[Any]],
        schema: TableSchema,
        number: int,
        options: Options,
    ) -> None:
        self.redis = redis_client
        self.connection = connection
        self.schema = schema
        self.table = schema.table
        self.number = number
        self.opts = options
        self.keys = self.table.keys(number, options.prefix)
        self.token = uuid.uuid4().hex
        self.result = PartitionResult()

    def run(self) -> PartitionResult:
        """Drain with bounded retries; a fault past them raises DrainFault.
        The count restarts once a batch lands again: the bound is on faults in a
        row, so a long drain does not give up over unrelated faults hours apart."""
        attempt = 0
        while True:
            landed = self.result.upserted + self.result.deleted + self.result.dead_lettered
            try:
                self._drain()
                return self.result
            except TRANSIENT as exc:
                progressed = self.result.upserted + self.result.deleted + self.result.dead_lettered > landed
                attempt = 1 if progressed else attempt + 1
                if attempt > self.opts.retries:
                    raise DrainFault(
                        f"{self.table.name} partition {self.number}: gave up after {self.opts.retries} retries: "
                        f"{type(exc).__name__}: {str(exc).strip()}"
                    ) from exc
                delay = min(self.opts.backoff * 2 ** (attempt - 1), 10.0)
                log.warning("%s/%d: %s; retry %d in %.1fs", self.table.name, self.number, exc, attempt, delay)
                time.sleep(delay)

    def _drain(self) -> None:
        if not scripts.lease(self.redis, self.keys, "acquire", self.token, self.opts.lease_ms):
            self.result.busy = True
            return
        try:
            merger = Merger(
                self.connection(),
                self.schema,
                lock_key(self.opts.prefix, self.table.name, self.number),
                self._renew,
                self.opts.pg_deadline_s,
            )
            decoder = Decoder(self.schema, self.opts.strict)
            while True:
                snap = scripts.snapshot(self.redis, self.keys, self.token, new_run_id())
                orphans = self._drain_run(snap.run, merger, decoder) if snap.run and snap.size else 0
                # After an adopted run, the dirty set still waits for its turn; ids
                # left in flight (a pop whose reply was lost) are adopted the same way.
                if not snap.adopted and not orphans:
                    break
        finally:
            try:
                scripts.lease(self.redis, self.keys, "release", self.token)
            except redis.exceptions.RedisError:
                pass  # it expires by itself

    def _renew(self) -> bool:
        return scripts.lease(self.redis, self.keys, "renew", self.token, self.opts.lease_ms)

    def _fetch(self, run: str, decoder: Decoder) -> tuple[scripts.Popped, Decoded | None]:
        popped = scripts.pop(self.redis, self.keys, run, self.token, self.opts.batch, self.opts.lease_ms)
        return popped, decoder.decode(popped.ids, popped.values) if popped.ids else None

    def _drain_run(self, run: str, merger: Merger, decoder: Decoder) -> int:
        """Drain the run; returns how many ids are left in flight with no batch
        of ours holding them (a pop re-sent after its reply was lost)."""
        # PostgreSQL merges batch k while one thread acks batch k-1 and another
        # pops and decodes batch k+1: Redis, Python and PostgreSQL work at once.
        acks: list[Future[None]] = []
        with (
            ThreadPoolExecutor(1, thread_name_prefix="syncwd-pop") as popper,
            ThreadPoolExecutor(1, thread_name_prefix="syncwd-ack") as acker,
        ):
            pending: Future[tuple[scripts.Popped, Decoded | None]] | None = popper.submit(self._fetch, run, decoder)
            while pending is not None:
                popped, batch = pending.result()
                for done in [a for a in acks if a.done()]:
                    acks.remove(done)
                    done.result()  # an ack that failed (lease lost, fault) stops the run here
                if batch is None:
                    break
                pending = popper.submit(self._fetch, run, decoder) if popped.remaining else None
                merged = self._merge(run, batch, merger)
                acks.append(acker.submit(self._ack, run, merged))
            for ack in acks:
                ack.result()
        # Clears the run from meta even when its last batch was all dead letters.
        _, orphans = scripts.ack(self.redis, self.keys, run, self.token, self.table.ttl, [], [])
        r = self.result
        self.redis.hset(
            self.keys.meta,
            mapping={
                "last_run": run,
                "last_finished_at": int(time.time()),
                "last_upserted": r.upserted,
                "last_deleted": r.deleted,
                "last_dead_lettered": r.dead_lettered,
            },
        )
        return orphans

    def _merge(self, run: str, batch: Decoded, merger: Merger) -> MergeResult:
        if batch.dead:
            scripts.dead(self.redis, self.keys, run, self.token, batch.dead)
        merged = merger.merge(batch)
        if merged.dead:
            scripts.dead(self.redis, self.keys, run, self.token, merged.dead)
        r = self.result
        r.upserted += len(merged.upserted)
        r.deleted += len(merged.deleted)
        r.dead_lettered += len(batch.dead) + len(merged.dead)
        if self.opts.on_batch:
            self.opts.on_batch(self.table.name, self.number, len(merged.upserted) + len(merged.deleted))
        return merged

    def _ack(self, run: str, merged: MergeResult) -> None:
        scripts.ack(self.redis, self.keys, run, self.token, self.table.ttl, merged.upserted, merged.deleted)
