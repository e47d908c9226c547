"""`FastDrainer`: moves every dirty record of the registered tables to
PostgreSQL, partition by partition, `workers` partitions at a time."""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from functools import partial
from typing import Any

from redis.exceptions import RedisError

from . import layout
from .checks import eviction_warnings, nothing_registered_warning
from .connection import refresh_slots, require_sync
from .deadlimits import DeadLetterLimits, trim_dead_letters
from .discover import find_unregistered, registry_epoch, restore_registry
from .errors import ConfigurationError, DrainFault, LeaseLost, SyncwdError
from .events import DrainObserver, Observers
from .faults import configuration_problem, is_transient
from .keys import DEFAULT_PREFIX, REGISTRY_EPOCH, registry_key, validate_prefix, validate_table_name
from .masking import mask
from .partition import Options, PartitionDrain, PartitionResult
from .report import DrainReport, TableReport
from .sinks import Sink, SinkOptions, builtin_sink
from .table import Table

log = logging.getLogger("syncwd_fast")


def registered_tables(
    redis_client: Any, prefix: str = DEFAULT_PREFIX, invalid: list[str] | None = None
) -> dict[str, Table]:
    """The tables the write side registered under ``prefix``. An invalid
    entry raises ConfigurationError, or, given ``invalid``, is said there and
    skipped (for `status`, which must show the other tables)."""
    raw = redis_client.hgetall(registry_key(prefix))
    tables = {}
    for name, entry in raw.items():
        name = name.decode(errors="replace") if isinstance(name, bytes) else name
        if name == REGISTRY_EPOCH:
            continue
        try:
            tables[name] = Table.from_registry(name, entry)
        except ConfigurationError as exc:
            if invalid is None:
                raise
            invalid.append(str(exc))
    return dict(sorted(tables.items()))


class FastDrainer:
    """Drain dirty records from Redis into PostgreSQL or MariaDB/MySQL (the
    DSN's scheme says which), or into a sink of one's own per table.

    >>> report = FastDrainer(redis.Redis(), "dbname=app", batch=5000).drain()
    >>> report.upserted, report.exit_code

    A partition whose lease another drainer holds is watched: if that drainer
    keeps renewing it, the partition is reported busy; if it died or stalled,
    its lease runs out (within the lease time) and this drain adopts its run.
    ``skip_busy=True`` reports every held partition busy at once.

    Tables missing from the registry ``P:tables`` (evicted, lost in a failover)
    are found from their partitions' meta when the registry is empty, when
    ``tables`` names one it lacks, or always with ``discover=True`` (a SCAN of
    the keyspace); they are registered again and drained in the same run.

    ``sinks`` maps table names to a Sink of their own (syncwd_fast.sinks);
    every other table goes to the built-in sink the DSN's scheme names.

    ``pop``: ids per Redis call (each pop, each ack). The default keeps the
    p99.9 of the calls under 2 ms, so the application's own commands are
    never held up long; 500 costs the drain process a quarter less CPU per
    record and Redis a tenth less, with calls of 2-5 ms at p99.9
    (bench/README.md "Issue 16").

    ``dead_letter_max`` / ``dead_letter_max_age`` (seconds): after each drain,
    keep at most that many dead letters per table, the newest, and none older
    (off by default; docs/operations.md "Dead letters"). Each one dropped is a
    record lost for good: the report counts them (``dead_letters_dropped``).
    ``observer``: a syncwd_fast.events.DrainObserver told of each run, batch,
    retry and partition as the drain goes (progress displays, metrics);
    ``on_batch(table, partition, rows)`` is the older, simpler hook.
    """

    def __init__(
        self,
        redis: Any,
        dsn: str,
        batch: int = 5000,
        tables: Iterable[str] | None = None,
        workers: int = 1,
        *,
        prefix: str = DEFAULT_PREFIX,
        lease_seconds: float = 30.0,
        strict: bool = False,
        retries: int = 5,
        retry_backoff: float = 0.5,
        on_batch: Callable[[str, int, int], None] | None = None,
        skip_busy: bool = False,
        discover: bool = False,
        sinks: Mapping[str, Sink] | None = None,
        pop: int = 125,
        dead_letter_max: int | None = None,
        dead_letter_max_age: float | None = None,
        observer: DrainObserver | None = None,
    ) -> None:
        if not isinstance(batch, int) or not 1 <= batch <= 100_000:
            raise ConfigurationError(f"batch must be an int in 1..100000, got {batch!r}")
        if not isinstance(pop, int) or not 1 <= pop <= 5000:
            raise ConfigurationError(f"pop must be an int in 1..5000, got {pop!r}")
        if not isinstance(workers, int) or workers < 1:
            raise ConfigurationError(f"workers must be an int >= 1, got {workers!r}")
        if not 1.0 <= lease_seconds <= 3600:
            # Shorter, and one pop or decode of a large batch can outlast the
            # heartbeat's beat: a live drainer would be taken for a dead one.
            raise ConfigurationError(f"lease_seconds must be in 1..3600, got {lease_seconds!r}")
        require_sync(redis, "FastDrainer")
        try:
            self.dead_letter_limits = DeadLetterLimits(dead_letter_max, dead_letter_max_age)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        self.redis = redis
        self.dsn = dsn
        self.sinks = {validate_table_name(name): sink for name, sink in (sinks or {}).items()}
        for name, sink in self.sinks.items():
            if not isinstance(sink, Sink):
                raise ConfigurationError(f"the sink of {name!r} is not a syncwd_fast.sinks.Sink: {sink!r}")
        self.sink_options = SinkOptions(strict=strict, lease_seconds=lease_seconds)
        self._default: Sink | None = None
        if dsn or not self.sinks:
            self._default = builtin_sink(dsn, self.sink_options)  # a DSN of an unknown kind is said at once
        self.batch = batch
        self.tables = [validate_table_name(t) for t in tables] if tables else None
        self.discover = discover
        self.workers = workers
        self.prefix = validate_prefix(prefix)
        self.lease_seconds = lease_seconds
        if observer is not None and not isinstance(observer, DrainObserver):
            raise ConfigurationError(f"observer is not a syncwd_fast.events.DrainObserver: {observer!r}")
        self.observer = observer
        self._observers = Observers(observer)
        self.options = Options(
            prefix=self.prefix,
            batch=batch,
            lease_ms=int(lease_seconds * 1000),
            strict=strict,
            retries=retries,
            backoff=retry_backoff,
            on_batch=on_batch,
            skip_busy=skip_busy,
            pop=pop,
            ack=pop,
            observer=self._observers,
        )
        self._used: list[Sink] = []  # sinks opened by the drain under way, closed at its end
        self._lock = threading.RLock()  # also taken by a signal handler on the main thread
        self._interrupt = threading.Event()
        self._interrupted_by: str | None = None
        self._active: dict[int, PartitionDrain] = {}
        self._report = DrainReport()
        self._started = time.perf_counter()

    def sink_for(self, table: str) -> Sink:
        """The sink ``table``'s batches go to."""
        sink = self.sinks.get(table) or self._default
        if sink is None:
            raise ConfigurationError(f"no sink for {table!r}: give it one, or a DSN for the built-in sinks")
        return sink

    def _with_retries(
        self, what: str, fn: Callable[[], Any], sink: Sink | None = None, table: str | None = None
    ) -> Any:
        for attempt in range(self.options.retries + 1):
            try:
                return fn()
            except Exception as exc:
                if not (is_transient(exc) or (sink is not None and sink.is_transient(exc))):
                    problem = configuration_problem(exc)
                    if problem:
                        raise ConfigurationError(mask(problem)) from exc
                    raise
                if attempt == self.options.retries:
                    raise DrainFault(f"{what}: {type(exc).__name__}: {str(exc).strip()}") from exc
                wait = min(self.options.backoff * 2**attempt, 10.0)
                refresh_slots(self.redis)  # a cluster node gone: the next try asks the new map
                # Said as it happens: a wrong port must not look like a long silence.
                log.warning(
                    "%s: %s: %s; retry %d of %d in %.1f s",
                    what,
                    type(exc).__name__,
                    mask(str(exc).strip()),
                    attempt + 1,
                    self.options.retries,
                    wait,
                )
                self._observers.retry(table, f"{what}: {type(exc).__name__}: {mask(str(exc).strip())}")
                time.sleep(wait)
        raise AssertionError("unreachable")

    def _tables(self, report: DrainReport) -> list[Table]:
        self._with_retries("reading the key layout", lambda: layout.check(self.redis, self.prefix))
        registry = self._with_retries("reading the table registry", lambda: registered_tables(self.redis, self.prefix))
        epoch = self._with_retries("reading the registry epoch", lambda: registry_epoch(self.redis, self.prefix))
        lost = self._with_retries(
            "looking for tables in partition meta",
            lambda: find_unregistered(self.redis, self.prefix, registry, self.tables, self.discover or epoch.changed),
        )
        if lost:
            self._register_again(lost)
            registry = dict(sorted({**registry, **lost}.items()))
        if epoch.changed and registry:
            try:
                epoch.settle(self.redis, self.prefix)
            except RedisError as exc:  # the next drain looks again
                log.debug("could not record the registry epoch: %s", exc)
        if not registry:
            report.warnings.extend(self._warn([nothing_registered_warning(self.redis, self.prefix)]))
        names = self.tables or list(registry)
        unknown = [n for n in names if n not in registry]
        if unknown:
            raise ConfigurationError(
                f"not registered under prefix {self.prefix!r} and in no partition meta: {', '.join(unknown)} "
                f"(registered: {', '.join(registry) or 'none'})"
            )
        tables = []
        # A DSN that cannot work fails here, for every table (none registered too).
        for sink in [*([self._default] if self._default else []), *(self.sink_for(n) for n in names)]:
            if sink not in self._used:
                self._used.append(sink)
                self._with_retries(f"connecting {type(sink).__name__}", sink.open, sink)
        for name in names:
            table = registry[name]
            report.tables[name] = TableReport(name, partitions=table.partitions)
            try:
                sink = self.sink_for(name)
                self._with_retries(f"checking {name} in its destination", partial(sink.check, table), sink, name)
                tables.append(table)
            except ConfigurationError as exc:
                log.error("%s", exc, extra={"table": name})
                report.tables[name].error = str(exc)
        return tables

    def _register_again(self, lost: dict[str, Table]) -> None:
        log.warning("%s lacks %s: registered again from partition meta", registry_key(self.prefix), ", ".join(lost))
        try:
            restore_registry(self.redis, self.prefix, lost)
        except RedisError as exc:  # draining needs only the partitions: go on, the next run retries
            log.warning("could not restore the registry entries: %s: %s", type(exc).__name__, exc)

    def drain(self) -> DrainReport:
        """Drain every dirty record once; never raises for a fault: the report
        says ``aborted`` (exit code 3) and everything left is resumable. Raises
        ConfigurationError for what a retry cannot fix (a database that does
        not exist, a login refused, a table not registered)."""
        started = time.perf_counter()
        report = self._report = DrainReport()
        self._started = started
        stop = threading.Event()
        try:
            report.warnings.extend(
                self._warn(self._with_retries("reading Redis settings", lambda: eviction_warnings(self.redis)))
            )
            tables = self._tables(report)
            tasks = [(t, n) for t in tables for n in range(t.partitions)]
            # Drainers started together (a fleet) begin at different partitions instead of all
            # queueing on partition 0, each watching the others' leases for up to a second.
            start = random.randrange(len(tasks)) if tasks else 0
            tasks = tasks[start:] + tasks[:start]
            self._observers.drain_started({t.name: t.partitions for t in tables})

            def work(table: Table, number: int) -> tuple[PartitionResult, SyncwdError | None] | None:
                if stop.is_set() or self._interrupt.is_set():
                    return None
                partition = PartitionDrain(
                    self.redis, self.sink_for(table.name), table, number, self.options, stop, self._interrupt
                )
                with self._lock:
                    self._active[id(partition)] = partition
                try:
                    return partition.run(), None
                except ConfigurationError as exc:  # e.g. the table dropped mid-run: a table error
                    log.error("%s", exc, extra={"table": table.name, "partition": number})
                    return partition.result, exc
                except (DrainFault, LeaseLost) as exc:
                    stop.set()
                    return partition.result, exc  # what it committed before the fault still counts
                except Exception as exc:  # a bug or an error no one foresaw: still a report, all resumable
                    log.debug(
                        "%s partition %d: unexpected error",
                        table.name,
                        number,
                        exc_info=True,
                        extra={"table": table.name, "partition": number},
                    )
                    stop.set()
                    return partition.result, DrainFault(
                        f"{table.name} partition {number}: unexpected {type(exc).__name__}: {str(exc).strip()}"
                    )
                finally:
                    with self._lock:
                        self._active.pop(id(partition), None)
                    partition.settle_events()
                    self._observers.partition_finished(table.name, number, partition.result)

            cut_short = False
            with ThreadPoolExecutor(self.workers, thread_name_prefix="syncwd-drain") as pool:
                futures = {pool.submit(work, t, n): (t.name, n) for t, n in tasks}
                for future in as_completed(futures):
                    name, number = futures[future]
                    outcome = future.result()
                    if outcome is None:
                        cut_short = cut_short or self._interrupt.is_set()
                        continue
                    result, error = outcome
                    cut_short = cut_short or result.interrupted
                    with self._lock:
                        self._add(report, name, number, result)
                    if isinstance(error, ConfigurationError):
                        report.tables[name].error = report.tables[name].error or str(error)
                    elif error is not None:
                        report.aborted = report.aborted or str(error)
            if cut_short:
                report.interrupted = self._interrupted_by or "a stop request"
            elif self.dead_letter_limits and not report.aborted:
                self._trim_dead_letters(report, tables)
        except DrainFault as exc:
            report.aborted = str(exc)
        except ConfigurationError:
            raise
        except Exception as exc:  # never a bare traceback: the report says what happened
            log.debug("unexpected error", exc_info=True)
            report.aborted = f"unexpected {type(exc).__name__}: {str(exc).strip()}"
        finally:
            self.close()
            self._interrupt.clear()
        report.seconds = time.perf_counter() - started
        self._observers.drain_finished(report)
        return report

    def _trim_dead_letters(self, report: DrainReport, tables: list[Table]) -> None:
        """The dead-letter limits, once the partitions are done (an
        interrupted or aborted drain leaves them to the next)."""
        try:
            dropped = trim_dead_letters(self.redis, tables, self.prefix, self.dead_letter_limits, time.time())
        except RedisError as exc:  # the dead letters stay; the next drain tries again
            report.warnings.extend(self._warn([f"dead-letter limits not applied: {type(exc).__name__}: {exc}"]))
            return
        for name, n in dropped.items():
            report.tables[name].dead_letters_dropped += n

    @staticmethod
    def _add(report: DrainReport, name: str, number: int, result: PartitionResult) -> None:
        table = report.tables[name]
        table.add(
            result.upserted,
            result.deleted,
            result.dead_lettered,
            result.skipped,
            result.already_landed,
            result.repeated,
        )
        if result.busy:
            table.busy.append(number)

    @staticmethod
    def _warn(warnings: list[str]) -> list[str]:
        for warning in warnings:
            log.warning("%s", warning)
        return warnings

    def request_stop(self, reason: str = "a stop request") -> None:
        """Stop the drain under way after the batch in flight: each partition
        acks what it merged and releases its lease; ``drain()`` then returns a
        report with ``interrupted`` set (exit code 4). Safe from a signal handler."""
        self._interrupted_by = reason
        self._interrupt.set()

    def abandon(self, reason: str) -> DrainReport:
        """Stop at once (a second signal): release the leases of the partitions
        under way so that the next drain adopts their runs without waiting, and
        return the report so far. The caller ends the process; transactions
        still open roll back when their connections close."""
        self.request_stop(reason)
        with self._lock:
            active = list(self._active.values())
            report = copy.deepcopy(self._report)
        for partition in active:
            partition.release()
            self._add(report, partition.table.name, partition.number, partition.result)
        report.interrupted = reason
        report.seconds = time.perf_counter() - self._started
        return report

    def __enter__(self) -> FastDrainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close what the drain opened (each sink's connections). ``with
        FastDrainer(...) as drainer:`` calls it on leaving the block."""
        with self._lock:
            used, self._used = self._used, []
        for sink in used:
            try:
                sink.close()
            except Exception as exc:  # the report matters more than a failed close
                log.debug("closing %s failed: %s", type(sink).__name__, exc)
