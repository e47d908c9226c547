"""Exceptions raised by syncwd-fast.

One base class to catch them all::

    SyncwdError
    ├── ConfigurationError      bad table definition, identifier, option or registry entry
    │   └── TableMissing        a registered table does not exist in its destination
    ├── LeaseLost               another drainer took the partition over (fencing)
    ├── RejectedRecords         raised by a sink: these records were refused, the rest is durable
    ├── SinkError               a sink failed on every record of a batch: retried like a server fault
    └── DrainFault              Redis or PostgreSQL failed past the retries;
                                everything not yet committed stays resumable
"""

from __future__ import annotations

from collections.abc import Collection, Mapping


class SyncwdError(Exception):
    """Base class of every syncwd-fast error."""


class ConfigurationError(SyncwdError, ValueError):
    """The configuration cannot work: fix it and run again (CLI exit code 2)."""


class TableMissing(ConfigurationError):
    """The table is registered in Redis but missing in its destination."""

    def __init__(self, table: str, where: str = "PostgreSQL") -> None:
        super().__init__(f"table {table!r} does not exist in {where}; its records stay in Redis")
        self.table = table


class LeaseLost(SyncwdError):
    """The drainer no longer holds the partition's lease; nothing more is merged."""


class RejectedRecords(SyncwdError):
    """Raised by a sink's ``write``: the records named (id -> reason) were
    refused and are dead-lettered with that reason; every other record of
    the batch is durable and is acked. ``skipped`` may name records left out
    on purpose (the destination holds a newer version)."""

    def __init__(self, rejected: Mapping[str, str], skipped: Collection[str] = ()) -> None:
        self.rejected = {str(k): str(v) for k, v in rejected.items()}
        self.skipped = list(skipped)
        names = ", ".join(list(self.rejected)[:5]) + (" ..." if len(self.rejected) > 5 else "")
        super().__init__(f"{len(self.rejected)} record(s) refused: {names}")


class SinkError(SyncwdError):
    """A sink raised for every part of a batch, so no record is to blame:
    retried with backoff like a server fault, then the drain stops (exit 3)."""


class DrainFault(SyncwdError):
    """A server fault outlasted the retries (CLI exit code 3)."""
