"""Draining one partition: lease, snapshot, then pop -> decode -> merge -> ack
batch after batch, the next batch fetched from Redis while PostgreSQL merges
the current one."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import holder, scripts, wire
from .errors import ConfigurationError, DrainFault, RejectedRecords, SinkError, SyncwdError
from .events import BatchDone, Observers
from .faults import REDIS_ERRORS, configuration_problem, is_transient
from .keys import TOMBSTONE
from .logs import Fields
from .sinks.base import Batch, Sink, Written
from .sinks.records import fill
from .table import Table

log = logging.getLogger("syncwd_fast")


@dataclass
class Options:
    prefix: str
    batch: int
    lease_ms: int
    strict: bool
    retries: int
    backoff: float
    on_batch: Callable[[str, int, int], None] | None = None
    skip_busy: bool = False  # a held lease means busy at once, live holder or not
    # Ids per pop call, and most ids per ack call that gives values the TTL (a
    # PEXPIREAT each: the costliest part of an ack); without a TTL an ack call
    # takes 8 times as many. Each Redis call stays well under 2 ms (a pop and the
    # previous pop's MGET, sent together, too), while a merge batch of ``batch``
    # records is filled by several pops. Acks of two pops (250 ids) measured no
    # less CPU per row at 1M records and took the calls' p99.9 from 1.6 to 2.7 ms.
    pop: int = 125
    ack: int = 125
    observer: Observers = field(default_factory=Observers)

    @property
    def heartbeat_s(self) -> float:
        """How often a held lease is renewed: well inside the lease, and often
        enough that a drainer watching it tells a live holder within a second."""
        return min(self.lease_ms / 3000, 1.0)


@dataclass
class PartitionResult:
    upserted: int = 0
    deleted: int = 0
    dead_lettered: int = 0
    skipped: int = 0  # not written: older than the row's version, or nothing to change
    # a repeated pass (Redis restarted or failed over mid-run): ids it found
    # landed before (not merged or counted again), and records it merged
    # (counted above; up to that many may have landed before, their acks lost)
    already_landed: int = 0
    repeated: int = 0
    busy: bool = False
    interrupted: bool = False  # stopped early by a signal; the rest stays resumable


@dataclass
class _Isolation:
    """What looking for the records a sink fails on found so far."""

    landed: bool = False
    done: set[str] = field(default_factory=set)  # ids of parts that landed
    failed: dict[str, str] = field(default_factory=dict)  # id -> the exception it failed with alone
    rejected: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    unchanged: int = 0


@dataclass
class Landed:
    """What became of a batch's records: the ids of each outcome."""

    upserted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # kept out by a newer version: no TTL
    dead: list[tuple[str, str]] = field(default_factory=list)
    recreated: dict[str, str] = field(default_factory=dict)  # id -> generation, written as new rows
    unchanged: int = 0  # of ``upserted``, how many changed nothing (counted skipped)
    # every record of the batch upserted: nothing kept, deleted or refused
    whole: bool = False
    # for the observer (events.BatchDone): the batch's upserted, deleted and
    # skipped as counted in the result, and how long the sink took
    counted: tuple[int, int, int] = (0, 0, 0)
    seconds: float | None = None


class _Merging:
    """Ids a repeated pass must not merge again (scripts.pop_batch): those it
    read from the redo list (the run set yields them again), and those of
    this drainer's batches popped and not yet acked (the pass may read them
    before their ack gives them their TTL). Either way the record holding
    them stays in flight until its ack, and decides their fate: one that
    fails is redone."""

    def __init__(self) -> None:
        self.redo: set[str] = set()
        self.pending: set[str] = set()

    def __contains__(self, rid: object) -> bool:
        return rid in self.redo or rid in self.pending

    def add(self, rid: str) -> None:
        self.redo.add(rid)


# A sink that raises for a batch is tried on halves of it, depth first, to
# find the records it fails on. When this many records failed alone and no
# part landed yet, a few records spread over the batch are tried alone: if
# none lands either, the sink is at fault, not the records.
SINGLES_BEFORE_PROBE = 16
PROBES = 8


def tombstones(ids: list[str], values: list[bytes | None]) -> set[str]:
    """The ids whose value is a tombstone. Most batches hold none: told by
    one search of the values joined (a tombstone starts the text, or
    follows a separator), not by a look at each."""
    try:
        joined = b"\n".join(values)  # type: ignore[arg-type]
    except TypeError:  # a missing value
        joined = None
    if joined is not None and not joined.startswith(TOMBSTONE) and b"\n" + TOMBSTONE not in joined:
        return set()
    return {rid for rid, raw in zip(ids, values) if raw is not None and raw[:1] == TOMBSTONE}


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


WATCH_S = 0.05  # how often a drainer watching another's lease looks at it


class Heartbeat:
    """Renews the partition's lease while its drainer works, merges included:
    a merge may wait on a row lock or a slow disk far longer than the lease.
    A drainer that dies or stalls stops renewing, so its lease expires and a
    successor takes over; fencing (the lease check before COMMIT) still stops
    a stalled drainer that wakes up late."""

    def __init__(self, renew: Callable[[], bool], interval_s: float, where: str, logger: Fields) -> None:
        self.renew = renew
        self.interval_s = interval_s
        self.where = where
        self.log = logger
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="syncwd-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self.renew() and not self._stop.is_set():
                    self.log.warning(
                        "%s: lease lost (expired or taken over); the merge under way will roll back", self.where
                    )
                    return
            except REDIS_ERRORS as exc:  # the lease may lapse; fencing then stops the merge
                self.log.debug("%s: lease renewal failed: %s", self.where, exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # A renewal stuck on a dead link must not hold the drain up; the
        # thread ends with its call, and a lease it can no longer renew expires.
        self._thread.join(timeout=self.interval_s + 1.0)


class PartitionDrain:
    def __init__(
        self,
        redis_client: Any,
        sink: Sink,
        table: Table,
        number: int,
        options: Options,
        stop: threading.Event | None = None,
        interrupt: threading.Event | None = None,
    ) -> None:
        """``stop``: another partition failed, give up waiting for a lease;
        ``interrupt``: a signal asks to stop after the batch in flight."""
        self.redis = redis_client
        self.sink = sink
        self.table = table
        self.number = number
        self.opts = options
        self.stop = stop or threading.Event()
        self.interrupt = interrupt or threading.Event()
        self.keys = self.table.keys(number, options.prefix)
        self.where = f"{self.table.name}/{number}"
        # JSON log lines carry the table, the partition and the run (logs.FIELDS).
        self.log = Fields(log, {"table": table.name, "partition": number})
        self.token = uuid.uuid4().hex
        self.result = PartitionResult()
        # Counted once: ids of batches merged whose ack failed (the batch may be
        # merged again after the retry), and dead-letter calls whose reply was
        # lost (time they were made at, ids), confirmed from the dead hash.
        self._unacked: set[str] = set()
        self._redone = _Merging()
        self._unconfirmed: list[tuple[float, list[str]]] = []
        # id -> tries: records the sink failed on alone, in this drain
        self._alone: dict[str, int] = {}
        # what the observer was told so far: upserted, deleted, dead_lettered, skipped
        self._told = [0, 0, 0, 0]
        # When this drainer began the partition (after the lease): status's rows/s is last_* over it.
        self._began: float | None = None

    def run(self) -> PartitionResult:
        """Drain with bounded retries; a fault past them raises DrainFault.
        The count restarts once a batch lands again: the bound is on faults in a
        row, so a long drain does not give up over unrelated faults hours apart."""
        attempt = 0
        while True:
            landed = self._landed()
            try:
                self._drain()
                self._confirm_dead()
                return self._finished()
            except Exception as exc:
                self._confirm_dead()
                if not self._transient(exc):
                    problem = configuration_problem(exc)
                    if problem:
                        raise ConfigurationError(f"{self.table.name}: {problem}") from exc
                    raise
                attempt = 1 if self._landed() > landed else attempt + 1
                if attempt > self.opts.retries:
                    raise DrainFault(
                        f"{self.table.name} partition {self.number}: gave up after {self.opts.retries} retries: "
                        f"{type(exc).__name__}: {str(exc).strip()}"
                    ) from exc
                delay = min(self.opts.backoff * 2 ** (attempt - 1), 10.0)
                self.log.warning("%s: %s; retry %d in %.1fs", self.where, exc, attempt, delay, extra={"seconds": delay})
                self.opts.observer.retry(self.table.name, f"{self.where}: {type(exc).__name__}: {str(exc).strip()}")
                if self.interrupt.wait(delay):  # a signal during the backoff: stop, all resumable
                    return self._finished()

    def _finished(self) -> PartitionResult:
        # A signal may land anywhere: before the lease, during the watch, in a
        # backoff. Whatever was skipped for it stays resumable and is said so.
        if self.interrupt.is_set():
            self.result.interrupted = True
            self.result.busy = False
        return self.result

    def _confirm_dead(self) -> None:
        """Count the dead letters a call wrote although its reply was lost:
        their entries carry the time the call passed."""
        while self._unconfirmed:
            at, ids = self._unconfirmed[0]
            try:
                entries = self.redis.hmget(self.keys.dead, [scripts.id_wire(i) for i in ids])
            except REDIS_ERRORS:
                return  # still unreachable: the next retry or the end of the run tries again
            self._unconfirmed.pop(0)
            for entry in entries:
                try:
                    if entry is not None and orjson.loads(entry).get("at") == at:
                        self.result.dead_lettered += 1
                except orjson.JSONDecodeError:
                    continue

    def _landed(self) -> int:
        r = self.result
        return r.upserted + r.deleted + r.dead_lettered + r.skipped

    # --- the lease ------------------------------------------------------------

    def _acquire(self) -> bool:
        if self._lease("acquire"):
            return True
        if self.opts.skip_busy:
            return False
        return self._wait_for_lease()

    def _lease(self, op: str, dead_token: bytes | None = None) -> bool:
        me = holder.identity()
        return scripts.lease(
            self.redis,
            self.keys,
            op,
            self.token,
            self.opts.lease_ms,
            holder.text(me),
            holder.encoded(me, self.token),
            dead_token,
        )

    def _wait_for_lease(self) -> bool:
        """Another token holds the lease. A holder that provably died (on
        this machine: holder.py) is replaced at once. A live holder renews it
        (its heartbeat), so the partition is busy; a dead or stalled one does
        not, and its lease runs out within the lease time: take it over then,
        and adopt its run. True when the lease is ours."""
        seen: tuple[bytes, int] | None = None
        while not (self.stop.is_set() or self.interrupt.is_set()):
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(self.keys.lease)
            pipe.pttl(self.keys.lease)
            pipe.hmget(self.keys.meta, "holder", "holder_id")
            token, ttl, (who, who_id) = pipe.execute()
            who_text = who.decode("utf-8", "replace") if who else "another drainer"
            if token is None or ttl == -2:  # gone (perhaps between the two reads)
                if self._lease("acquire"):
                    # Seen close to its end: it ran out. Seen far from it: released, a hand-off.
                    if seen is not None and seen[1] <= min(1000, self.opts.lease_ms // 2):
                        self.log.warning(
                            "%s: its drainer stopped renewing the lease; taking the partition over", self.where
                        )
                    elif seen is not None:  # released well before it would have expired: a hand-off
                        self.log.info("%s: the drainer before this one finished; taking the partition", self.where)
                    return True
                seen = None  # someone else was quicker: watch the new holder
                continue
            if seen is None and holder.is_dead(who_id, token):
                if self._lease("takeover", token):
                    self.log.warning(
                        "%s: the lease's holder (%s) is no longer running on this machine; taking the partition"
                        " over at once",
                        self.where,
                        who_text,
                    )
                    return True
                continue  # it changed hands meanwhile: look again
            if ttl < 0 or (seen is not None and (token != seen[0] or ttl > seen[1])):
                # renewed, or taken over by another live drainer (or set with no expiry by hand)
                self.log.info("%s: busy, held by %s", self.where, who_text)
                return False
            if seen is None:
                self.log.info(
                    "%s: the lease is held by %s; waiting up to %.1f s to see whether it is renewed",
                    self.where,
                    who_text,
                    ttl / 1000,
                )
            seen = (token, ttl)
            time.sleep(min(WATCH_S, ttl / 1000))
        return False

    def release(self) -> None:
        """Give the lease up now (the process is about to end): the next drain
        adopts this partition's run at once."""
        try:
            scripts.lease(self.redis, self.keys, "release", self.token)
        except REDIS_ERRORS as exc:
            self.log.debug("%s: could not release the lease: %s", self.where, exc)

    def _renew(self) -> bool:
        return scripts.lease(self.redis, self.keys, "renew", self.token, self.opts.lease_ms)

    # --- draining -------------------------------------------------------------

    def _drain(self) -> None:
        if not self._acquire():
            self.result.busy = True
            return
        if self._began is None:
            self._began = time.monotonic()
        try:
            with Heartbeat(self._renew, self.opts.heartbeat_s, self.where, self.log):
                while not self.interrupt.is_set():
                    snap = scripts.snapshot(self.redis, self.keys, self.token, new_run_id())
                    # A new dict, not an update: the heartbeat's thread may be logging through it.
                    self.log.extra = {"table": self.table.name, "partition": self.number, "run": snap.run}
                    if snap.run and snap.size:
                        self.opts.observer.run_started(self.table.name, self.number, snap.run, snap.size, snap.adopted)
                    orphans = self._drain_run(snap.run) if snap.run and snap.size else 0
                    # After an adopted run, the dirty set still waits for its turn; ids
                    # left in flight (a pop whose reply was lost) are adopted the same way.
                    if not snap.adopted and not orphans:
                        break
        finally:
            try:
                scripts.lease(self.redis, self.keys, "release", self.token)
            except REDIS_ERRORS:
                pass  # it expires by itself

    def _fetch(self, run: str) -> tuple[scripts.Popped, Batch | None, list[tuple[str, str]]]:
        """The next batch, made ready for the sink (decoded, and whatever the
        sink prepares ahead), and the records that cannot be read."""
        popped = self._pop_batch(run)
        self._redone.pending.update(popped.ids)
        if not popped.ids:
            return popped, None, []
        batch = Batch(self.table, self.number, prefix=self.opts.prefix, recreated=dict(popped.recreated))
        batch._lease = self._renew
        batch._landing = self._landing
        dead: list[tuple[str, str]] = []
        if self.sink.raw:
            batch.ids, batch.values = popped.ids, popped.values
        else:
            dead = fill(batch, popped.ids, popped.values)
        self._prepare(batch)
        return popped, batch, dead

    def _prepare(self, batch: Batch) -> None:
        try:
            self.sink.prepare(batch)
        except Exception as exc:  # only work done ahead: write() meets whatever it was
            self.log.debug("%s: preparing a batch failed: %s: %s", self.where, type(exc).__name__, exc)
            batch.state = None

    def _landing(self, token: str, marks: dict[str, str]) -> object:
        return scripts.landing(self.redis, self.keys, self.token, token, marks)

    def _pop_batch(self, run: str) -> scripts.Popped:
        """One merge batch (``batch`` ids) from several short pops of ``pop`` ids."""
        return scripts.pop_batch(
            self.redis, self.keys, run, self.token, self.opts.pop, self.opts.batch, self.opts.lease_ms, self._redone
        )

    def _drain_run(self, run: str) -> int:
        """Drain the run; returns how many ids are left in flight with no batch
        of ours holding them (a pop re-sent after its reply was lost)."""
        # The run's start (its snapshot, perhaps by a drainer that died): nothing dirty after it finishes is older.
        started = self.redis.hget(self.keys.meta, "started_at")
        # Nothing of ours is in flight yet: what a failed try left there is
        # adopted into the redo list (or lost with Redis, and read again).
        self._redone = _Merging()
        # PostgreSQL merges batch k while one thread acks batch k-1 and another
        # pops and decodes batch k+1: Redis, Python and PostgreSQL work at once.
        acks: list[Future[None]] = []
        with (
            ThreadPoolExecutor(1, thread_name_prefix="syncwd-pop") as popper,
            ThreadPoolExecutor(1, thread_name_prefix="syncwd-ack") as acker,
        ):
            pending: Future[tuple[scripts.Popped, Batch | None, list[tuple[str, str]]]] | None = popper.submit(
                self._fetch, run
            )
            while pending is not None:
                popped, batch, unreadable = pending.result()
                for done in [a for a in acks if a.done()]:
                    acks.remove(done)
                    done.result()  # an ack that failed (lease lost, fault) stops the run here
                if batch is None:
                    if popped.pops:  # ids of a repeated pass only, every one done: nothing to merge
                        self.result.already_landed += len(popped.done)
                        self._ack(run, popped, Landed(), set())
                    break
                pending = popper.submit(self._fetch, run) if popped.remaining else None
                merged, gone = self._merge(run, popped, batch, unreadable)
                acks.append(acker.submit(self._ack, run, popped, merged, gone))
                if self.interrupt.is_set():
                    # Stop after the batch in flight: a batch popped ahead stays
                    # in flight, and the next drain adopts it at once.
                    self.result.interrupted = True
                    if pending is not None:
                        try:
                            pending.result()
                        except Exception as exc:  # its ids are in flight either way
                            self.log.debug("%s: the pop under way when stopping failed: %s", self.where, exc)
                    break
            for ack in acks:
                ack.result()
        # Clears the run from meta even when its last batch was all dead letters.
        _, orphans = scripts.ack(self.redis, self.keys, run, self.token, self.table.ttl, [])
        r = self.result
        seconds = round(time.monotonic() - (self._began or time.monotonic()), 3)
        self.log.debug(
            "%s: run %s finished: %d rows in %.2f s",
            self.where,
            run,
            self._landed(),
            seconds,
            extra={"rows": self._landed(), "seconds": seconds},
        )
        self.redis.hset(
            self.keys.meta,
            mapping={
                "last_run": run,
                "last_finished_at": int(time.time()),
                "last_upserted": r.upserted,
                "last_deleted": r.deleted,
                "last_dead_lettered": r.dead_lettered,
                "last_skipped": r.skipped,
                "last_started_at": started or "",
                "last_seconds": seconds,
            },
        )
        return orphans

    def _merge(
        self, run: str, popped: scripts.Popped, batch: Batch, unreadable: list[tuple[str, str]]
    ) -> tuple[Landed, set[str]]:
        """The batch written by the sink, and the ids dead-lettered out of it."""
        # What the batch holds, taken before the sink sees it (it gets a copy):
        # its ids, and those of its deletes.
        if self.sink.raw:
            ids, deleting = list(batch.ids), tombstones(batch.ids, batch.values)
        else:
            ids = [r.id for r in batch.upserts] + [r.id for r in batch.deletes]
            deleting = {r.id for r in batch.deletes}
        # Every record unreadable: nothing for the sink to write.
        started = time.perf_counter()
        written = self._write(batch) if ids else Written()
        seconds = time.perf_counter() - started
        merged = self._outcome(ids, deleting, dict(batch.recreated), written, unreadable)
        merged.seconds = seconds
        # Dead-lettered by the ack thread, before the batch's ack (_ack): off
        # the merge's path, as acks are.
        gone = {rid for rid, _ in merged.dead}
        r = self.result
        before = (r.upserted, r.deleted, r.skipped)
        again = self._unacked
        if again:  # merged before, its ack failed: counted then
            counted = {rid for rid in (*merged.upserted, *merged.deleted, *merged.skipped) if rid in again}
            again.difference_update(counted)
            # The sink says how many upserts changed nothing, not which: those
            # counted before are among them (their rows are there now).
            fresh = sum(1 for rid in merged.upserted if rid not in counted)
            unchanged = max(0, merged.unchanged - (len(merged.upserted) - fresh))
            r.upserted += fresh - unchanged
            r.deleted += sum(1 for rid in merged.deleted if rid not in counted)
            r.skipped += sum(1 for rid in merged.skipped if rid not in counted) + unchanged
        else:
            r.upserted += len(merged.upserted) - merged.unchanged
            r.deleted += len(merged.deleted)
            r.skipped += len(merged.skipped) + merged.unchanged
        r.already_landed += len(popped.done)
        if popped.repeated:
            r.repeated += sum(
                1 for rid in (*merged.upserted, *merged.deleted, *merged.skipped, *gone) if rid in popped.repeated
            )
        merged.counted = (r.upserted - before[0], r.deleted - before[1], r.skipped - before[2])
        if self.opts.on_batch:
            self.opts.on_batch(self.table.name, self.number, len(merged.upserted) + len(merged.deleted))
        return merged, gone

    # --- the sink -------------------------------------------------------------

    def _transient(self, exc: BaseException) -> bool:
        """Worth retrying the partition: a server, link or sink fault."""
        return is_transient(exc) or isinstance(exc, SinkError) or self.sink.is_transient(exc)

    def _blames_records(self, exc: BaseException) -> bool:
        """Whether an exception of the sink's may be some record's fault."""
        return not isinstance(exc, SyncwdError) and not self._transient(exc) and self.sink.blames_records(exc)

    def _write_once(self, batch: Batch) -> Written:
        try:
            written = self.sink.write(batch.copy())
        except RejectedRecords as exc:
            return Written(skipped=exc.skipped, rejected=exc.rejected)
        if written is None:
            return Written()
        if not isinstance(written, Written):
            raise TypeError(f"{type(self.sink).__name__}.write returned {written!r}, not Written or None")
        return written

    def _write(self, batch: Batch) -> Written:
        """The batch made durable by the sink. An exception that may be a
        record's is looked for in the records: see ``_isolate``."""
        try:
            return self._write_once(batch)
        except Exception as exc:
            if not self._blames_records(exc):
                raise
            return self._isolate(batch, exc)

    def _isolate(self, batch: Batch, first: Exception) -> Written:
        """Write the batch again in halves, depth first, down to single
        records: a record that fails alone while others land is refused with
        the exception as its reason. When nothing lands, no record is to blame
        (SinkError, retried like a server fault), except in a small batch
        (at most SINGLES_BEFORE_PROBE records, every one failing alone): on the
        last try its records are refused, as they would otherwise come first
        in every drain and hold the rest of their partition up."""
        what = f"{type(first).__name__}: {str(first).strip()}"
        ids = list(dict.fromkeys(batch.record_ids()))
        found = _Isolation()
        if len(ids) == 1:
            found.failed[ids[0]] = what
        else:
            self.log.warning("%s: the sink failed on a batch (%s); looking for the records at fault", self.where, what)
            stack = [ids[len(ids) // 2 :], ids[: len(ids) // 2]]
            while stack:
                part = [i for i in stack.pop() if i not in found.done]
                if not part or self._try_part(batch, part, found):
                    continue
                if len(part) > 1:
                    stack += [part[len(part) // 2 :], part[: len(part) // 2]]
                elif not found.landed and len(found.failed) == SINGLES_BEFORE_PROBE:
                    # Sixteen bad records in a row, or a sink that fails on all?
                    untried = [i for i in ids if i not in found.failed]
                    for rid in untried[:: max(1, len(untried) // PROBES)][:PROBES]:
                        self._try_part(batch, [rid], found)
                    if not found.landed:
                        break
        if found.landed:
            # A record that failed alone may have landed in a part after (with
            # a record it needed): it is written, not refused.
            refused = {
                rid: f"the sink failed on this record: {reason}"
                for rid, reason in found.failed.items()
                if rid not in found.done
            }
            return Written(found.skipped, {**refused, **found.rejected}, found.unchanged)
        if ids and len(found.failed) == len(ids) <= SINGLES_BEFORE_PROBE:
            tries = max([self._alone.get(rid, 0) for rid in ids]) + 1
            self._alone.update(dict.fromkeys(ids, tries))
            if tries > self.opts.retries:
                self.log.warning(
                    "%s: the sink failed on %d record(s) alone %d times: dead-lettered", self.where, len(ids), tries
                )
                return Written(
                    rejected={
                        rid: f"the sink failed on this record alone, {tries} times: {found.failed[rid]}" for rid in ids
                    }
                )
        raise SinkError(f"{self.where}: the sink failed on every part of a batch: unexpected {what}") from first

    def _try_part(self, batch: Batch, part: list[str], found: _Isolation) -> bool:
        """Write ``part`` of the batch on its own; True when it landed."""
        sub = batch.subset(part)
        self._prepare(sub)
        try:
            written = self._write_once(sub)
        except Exception as exc:
            if not self._blames_records(exc):
                raise
            if len(part) == 1:
                found.failed[part[0]] = f"{type(exc).__name__}: {str(exc).strip()}"
            return False
        found.landed = True
        found.done.update(part)
        found.rejected.update(written.rejected)
        found.skipped.extend(written.skipped)
        found.unchanged += written.unchanged
        return True

    def _outcome(
        self,
        ids: list[str],
        deleting: set[str],
        recreated: dict[str, str],
        written: Written,
        unreadable: list[tuple[str, str]],
    ) -> Landed:
        """Each record's outcome, from what the sink said of the batch
        (``ids``: its records; ``deleting``: those that are deletes)."""
        out = Landed(unchanged=written.unchanged)
        rejected = dict(unreadable)
        rejected.update(written.rejected)
        if not rejected and not written.skipped and not recreated:  # the common batch: every record written
            if deleting:
                out.upserted = [rid for rid in ids if rid not in deleting]
                out.deleted = [rid for rid in ids if rid in deleting]
            else:
                out.upserted, out.whole = ids, True
            return out
        skipped = set(written.skipped)
        known = set()
        for rid in ids:
            known.add(rid)
            if rid in rejected:
                continue
            if rid in deleting:
                out.deleted.append(rid)
            elif rid in skipped:
                out.skipped.append(rid)
            else:
                out.upserted.append(rid)
                if rid in recreated:
                    out.recreated[rid] = recreated[rid]
        known.update(rid for rid, _ in unreadable)
        stray = [rid for rid in rejected if rid not in known]
        if stray:
            self.log.warning("%s: the sink refused ids that are not in the batch, ignored: %s", self.where, stray[:5])
        out.dead = [(rid, reason) for rid, reason in rejected.items() if rid not in stray]
        return out

    def _ack_calls(self, pops: list[tuple[int, list[str]]]) -> list[list[tuple[int, list[str]]]]:
        """The batch's pops grouped into ack calls of at most ``ack`` ids (8x that
        with no TTL; a pop bigger than that is a call of its own): fewer calls,
        each short."""
        calls: list[list[tuple[int, list[str]]]] = []
        size, most = 0, self.opts.ack if self.table.ttl else 8 * self.opts.ack
        for record in pops:
            n = len(record[1])
            if calls and size + n <= most:
                calls[-1].append(record)
                size += n
            else:
                calls.append([record])
                size = n
        return calls

    def _dead(self, run: str, popped: scripts.Popped, dead: list[tuple[str, str]], gone: set[str]) -> None:
        """Dead-letter ``dead`` (id, reason), out of the pops holding them;
        counted once the call passed (or, its reply lost, once its entries
        are found: _confirm_dead)."""
        at = round(time.time(), 3)
        try:
            holding = [number for number, ids in popped.pops if not gone.isdisjoint(ids)]
            scripts.dead(self.redis, self.keys, run, self.token, dead, at, holding)
        except REDIS_ERRORS:
            self._unconfirmed.append((at, [rid for rid, _ in dead]))
            raise
        self.result.dead_lettered += len(dead)

    def _ack(self, run: str, popped: scripts.Popped, merged: Landed, gone: set[str]) -> None:
        """The batch's dead letters (``_dead``), then short ack calls of a few
        pops each. The script reads the ids from the pops' in-flight records
        and gives every one the TTL but the kept, deleted and done ones named
        here: so each id must have been merged or dead-lettered."""
        kept, deleted, done = set(merged.skipped), set(merged.deleted), {*popped.done, *popped.held}
        # The common batch: every id its pops hold, each once, was upserted (no
        # per-id check needed: the pops' ids are the batch's, distinct).
        whole = (
            merged.whole
            and not done
            and len(merged.upserted) == len(popped.ids) == sum(len(ids) for _, ids in popped.pops)
        )
        accounted = set() if whole else kept | deleted | done | set(merged.upserted) | gone
        dead = 0
        try:
            with wire.held(self.redis):  # one connection for the batch's calls
                if merged.dead:
                    self._dead(run, popped, merged.dead, gone)
                    dead = len(merged.dead)
                for records in self._ack_calls(popped.pops):
                    every: set[str] = set()
                    if not whole:
                        for _, ids in records:
                            every.update(ids)
                        missing = every - accounted
                        if missing:  # never give a TTL to a value that did not land
                            raise RuntimeError(
                                f"{self.where}: ids neither merged nor dead-lettered: {sorted(missing)[:5]}"
                            )
                    scripts.ack(
                        self.redis,
                        self.keys,
                        run,
                        self.token,
                        self.table.ttl,
                        [number for number, _ in records],
                        # (per id only when there are any: the common batch has none)
                        kept=list(every & kept) if kept else None,
                        deleted=list(every & deleted) if deleted else None,
                        done=list(every & done) if done else None,
                        recreated={rid: merged.recreated[rid] for rid in every & merged.recreated.keys()},
                    )
        except Exception:
            self._unacked.update(merged.upserted, merged.deleted, merged.skipped)
            raise
        finally:
            if merged.seconds is not None:  # merged: its rows are in the result, acked or not
                self._tell(*merged.counted[:2], dead, merged.counted[2], merged.seconds)
        self._redone.pending.difference_update(popped.ids)

    # --- the observer ---------------------------------------------------------

    def _tell(self, upserted: int, deleted: int, dead: int, skipped: int, seconds: float | None) -> None:
        told = self._told
        told[0] += upserted
        told[1] += deleted
        told[2] += dead
        told[3] += skipped
        self.opts.observer.batch_done(
            BatchDone(self.table.name, self.number, upserted, deleted, dead, skipped, seconds)
        )

    def settle_events(self) -> None:
        """Tell the observer what the result counted outside the batches'
        events (dead letters whose call's reply was lost, confirmed later), so
        that the events add up to the result. Called once the partition's
        threads are done."""
        r, told = self.result, self._told
        rest = (r.upserted - told[0], r.deleted - told[1], r.dead_lettered - told[2], r.skipped - told[3])
        if any(rest):
            self._tell(*rest, None)
