"""syncwd-fast: keep hot records in Redis, drain them to PostgreSQL or MariaDB/MySQL (or a sink of
one's own) in bulk."""

from .admin import dead_letters, purge_dead_letters, record, retry_dead_letters, status
from .deadletter import DeadLetter, Retried
from .drain import FastDrainer, registered_tables
from .errors import (
    ConfigurationError,
    DrainFault,
    LeaseLost,
    RejectedRecords,
    SinkError,
    SyncwdError,
    TableMissing,
)
from .redis_connect import connect_redis, detect_cluster
from .repartition import Repartitioned, repartition_table
from .report import DrainReport, TableReport
from .sinks import Batch, Record, Sink, SinkOptions, Written
from .speedups import ACTIVE as SPEEDUPS
from .table import Table
from .tables_admin import Removed, list_tables, remove_table, show_table
from .writer import Syncwd

__all__ = [
    "Batch",
    "ConfigurationError",
    "DeadLetter",
    "DrainFault",
    "DrainReport",
    "SPEEDUPS",
    "Sink",
    "SinkError",
    "SinkOptions",
    "FastDrainer",
    "LeaseLost",
    "Record",
    "RejectedRecords",
    "Removed",
    "Repartitioned",
    "Retried",
    "Syncwd",
    "SyncwdError",
    "Table",
    "TableMissing",
    "TableReport",
    "Written",
    "connect_redis",
    "dead_letters",
    "detect_cluster",
    "list_tables",
    "purge_dead_letters",
    "record",
    "registered_tables",
    "remove_table",
    "repartition_table",
    "retry_dead_letters",
    "show_table",
    "status",
]
__version__ = "0.2.0"
