"""The ``syncwd-fast`` command: a few lines over the Python API per command,
one module per command group (the way the Python API is laid out).

Every option reads one environment variable, shown in ``--help``. With
``--json`` the last line of stdout is always the JSON report, whatever the
exit code, usage errors included."""

from __future__ import annotations

from . import dead_letter, demo, drain, status, tables  # noqa: F401  (each registers its commands on main)
from .app import main

__all__ = ["main"]
