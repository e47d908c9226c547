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
from .report import DrainReport, TableReport
from .sinks import Batch, Record, Sink, SinkOptions, Written
from .speedups import ACTIVE as SPEEDUPS
from .table import Table
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
    "Retried",
    "Syncwd",
    "SyncwdError",
    "Table",
    "TableMissing",
    "TableReport",
    "Written",
    "dead_letters",
    "purge_dead_letters",
    "record",
    "registered_tables",
    "retry_dead_letters",
    "status",
]
__version__ = "0.2.0"
