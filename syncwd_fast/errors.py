"""Exceptions raised by syncwd-fast.

One base class to catch them all::

    SyncwdError
    ├── ConfigurationError      bad table definition, identifier, option or registry entry
    │   └── TableMissing        a registered table does not exist in PostgreSQL
    ├── LeaseLost               another drainer took the partition over (fencing)
    └── DrainFault              Redis or PostgreSQL failed past the retries;
                                everything not yet committed stays resumable
"""

from __future__ import annotations


class SyncwdError(Exception):
    """Base class of every syncwd-fast error."""


class ConfigurationError(SyncwdError, ValueError):
    """The configuration cannot work: fix it and run again (CLI exit code 2)."""


class TableMissing(ConfigurationError):
    """The table is registered in Redis but missing in PostgreSQL."""

    def __init__(self, table: str) -> None:
        super().__init__(f"table {table!r} does not exist in PostgreSQL; its records stay in Redis")
        self.table = table


class LeaseLost(SyncwdError):
    """The drainer no longer holds the partition's lease; nothing more is merged."""


class DrainFault(SyncwdError):
    """A server fault outlasted the retries (CLI exit code 3)."""
