"""syncwd-fast: keep hot records in Redis, drain them to PostgreSQL in bulk."""

from .drain import FastDrainer, registered_tables
from .errors import ConfigurationError, DrainFault, LeaseLost, SyncwdError, TableMissing
from .report import DrainReport, TableReport
from .speedups import ACTIVE as SPEEDUPS
from .table import Table
from .writer import Syncwd

__all__ = [
    "ConfigurationError",
    "DrainFault",
    "DrainReport",
    "SPEEDUPS",
    "FastDrainer",
    "LeaseLost",
    "Syncwd",
    "SyncwdError",
    "Table",
    "TableMissing",
    "TableReport",
    "registered_tables",
]
__version__ = "0.1.0"
