"""Prometheus metrics of drains (``--metrics-port``): an observer of the
drain (events.py) that counts what it does, per table, into a registry of its
own, served over HTTP. Needs the extra ``syncwd-fast[metrics]``
(prometheus-client). docs/operations.md "Metrics" describes each metric."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .errors import ConfigurationError
from .events import BatchDone, DrainObserver
from .status import table_status

if TYPE_CHECKING:
    from .report import DrainReport

log = logging.getLogger("syncwd_fast")

# Batches of a few thousand rows merge in tens to hundreds of ms; a lock wait
# or a slow disk makes seconds to a minute.
MERGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
NO_TABLE = ""  # the table label of retries that are no one table's (the registry, connecting)
MISSING = "--metrics-port needs prometheus-client: pip install 'syncwd-fast[metrics]'"


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ConfigurationError(MISSING) from exc
    return prometheus_client


class DrainMetrics(DrainObserver):
    """Counts a drainer's work (``FastDrainer(observer=metrics)``) into
    ``self.registry``, a CollectorRegistry of its own (never the global one).
    After each drain it reads each table's backlog and dead letters from
    Redis (``redis``, ``prefix``, ``tables``: as the drainer's; None: every
    registered table)."""

    def __init__(self, redis: Any, prefix: str, tables: Iterable[str] | None = None) -> None:
        prom = _prometheus()
        self.redis = redis
        self.prefix = prefix
        self.tables = list(tables) if tables else None
        self.registry = prom.CollectorRegistry(auto_describe=True)
        r = self.registry

        def counter(name: str, doc: str) -> Any:
            return prom.Counter(name, doc, ["table"], registry=r)

        self.upserted = counter("syncwd_rows_upserted", "Rows written (inserted or updated) in the destination.")
        self.deleted = counter("syncwd_rows_deleted", "Rows deleted in the destination (tombstones drained).")
        self.dead_lettered = counter("syncwd_rows_dead_lettered", "Records refused and put in the dead letters.")
        self.skipped = counter(
            "syncwd_rows_skipped", "Records not written: older than their row's version, or changing nothing."
        )
        self.batches = counter("syncwd_batches", "Batches merged and acked.")
        self.retries = counter("syncwd_retries", 'Faults retried (table "": the registry, connecting).')
        self.dropped = counter(
            "syncwd_dead_letters_dropped", "Dead letters dropped for good by --dead-letter-max / --dead-letter-max-age."
        )
        self.backlog = prom.Gauge(
            "syncwd_backlog",
            "Records waiting in Redis (dirty + in a run + in flight), read after each drain.",
            ["table"],
            registry=r,
        )
        self.dead = prom.Gauge(
            "syncwd_dead_letters", "Dead letters waiting in Redis, read after each drain.", ["table"], registry=r
        )
        self.merge_seconds = prom.Histogram(
            "syncwd_batch_merge_seconds",
            "Seconds the destination took to merge a batch.",
            ["table"],
            buckets=MERGE_BUCKETS,
            registry=r,
        )
        self.last_end = prom.Gauge(
            "syncwd_last_drain_end_time_seconds", "When the last drain ended (unix seconds).", registry=r
        )
        self.last_seconds = prom.Gauge(
            "syncwd_last_drain_duration_seconds", "How long the last drain took (seconds).", registry=r
        )
        self.last_exit = prom.Gauge(
            "syncwd_last_drain_exit_code",
            "The last drain's exit code (0 ok, 1 dead letters, 3 fault, 4 interrupted).",
            registry=r,
        )
        self._lock = threading.Lock()  # refresh() from the drain and from serve()
        self._gauged: set[str] = set()  # tables whose backlog and dead letters are shown

    def _table(self, name: str) -> None:
        """Every series of the table, at 0 until something happens: a
        rate() over it needs the series before its first increase."""
        for metric in (
            self.upserted,
            self.deleted,
            self.dead_lettered,
            self.skipped,
            self.batches,
            self.retries,
            self.dropped,
        ):
            metric.labels(name)
        self.merge_seconds.labels(name)

    def drain_started(self, tables: Mapping[str, int]) -> None:
        for name in tables:
            self._table(name)

    def batch_done(self, batch: BatchDone) -> None:
        t = batch.table
        if batch.upserted:
            self.upserted.labels(t).inc(batch.upserted)
        if batch.deleted:
            self.deleted.labels(t).inc(batch.deleted)
        if batch.dead_lettered:
            self.dead_lettered.labels(t).inc(batch.dead_lettered)
        if batch.skipped:
            self.skipped.labels(t).inc(batch.skipped)
        if batch.merge_seconds is not None:  # counts settled after the batches are no batch
            self.batches.labels(t).inc()
            self.merge_seconds.labels(t).observe(batch.merge_seconds)

    def retry(self, table: str | None, what: str) -> None:
        self.retries.labels(table or NO_TABLE).inc()

    def drain_finished(self, report: DrainReport) -> None:
        self.last_end.set(time.time())
        self.last_seconds.set(report.seconds)
        self.last_exit.set(report.exit_code)
        for name, table in report.tables.items():  # dropped after the drain (deadlimits.py): no batch event says so
            if table.dead_letters_dropped:
                self.dropped.labels(name).inc(table.dead_letters_dropped)
        self.refresh()

    def refresh(self) -> None:
        """Read each table's backlog and dead letters from Redis. A Redis that
        cannot be read keeps the values of the last read (and says so)."""
        with self._lock:
            try:
                status = table_status(self.redis, self.prefix, self.tables)
            except Exception as exc:
                log.warning("metrics: could not read the backlog from Redis: %s: %s", type(exc).__name__, exc)
                return
            for name, t in status.items():
                self._table(name)
                self.backlog.labels(name).set(t["dirty"] + t["in_run"] + t["inflight"])
                self.dead.labels(name).set(t["dead"])
            # A table removed since (`tables remove`): no backlog of it waits, and a
            # series left at its last value would keep an alert firing forever.
            for name in self._gauged - status.keys():
                for gauge in (self.backlog, self.dead):
                    try:
                        gauge.remove(name)
                    except KeyError:
                        pass
            self._gauged = set(status)

    def serve(self, port: int, addr: str = "127.0.0.1") -> MetricsServer:
        """Serve the metrics at http://addr:port/metrics (any path, in fact)
        until the server is closed or the process ends; reads the backlog first."""
        server = MetricsServer(self.registry, port, addr)
        self.refresh()
        return server


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # a scrape every few seconds is no news
        pass


class MetricsServer:
    """An HTTP server of a registry's metrics, on a daemon thread."""

    def __init__(self, registry: Any, port: int, addr: str = "127.0.0.1") -> None:
        prom = _prometheus()
        try:
            self.httpd = make_server(
                addr,
                port,
                prom.make_wsgi_app(registry),
                server_class=_Server6 if ":" in addr else _Server,
                handler_class=_Quiet,
            )
        except OSError as exc:
            raise ConfigurationError(f"metrics: cannot listen on {addr}:{port}: {exc.strerror or exc}") from exc
        self.port: int = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="syncwd-metrics", daemon=True)
        self._thread.start()
        log.info("metrics at http://%s:%d/metrics", f"[{addr}]" if ":" in addr else addr, self.port)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
