"""syncwd-fast: keep hot records in Redis, drain them to PostgreSQL or MariaDB/MySQL (or a sink of
one's own) in bulk."""

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
    "Syncwd",
    "SyncwdError",
    "Table",
    "TableMissing",
    "TableReport",
    "Written",
    "registered_tables",
]
__version__ = "0.1.0"
