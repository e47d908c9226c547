"""Which implementation of the per-row work runs: the C extension
(``syncwd_fast._speedups``) where it is built, else pure Python.

``SYNCWD_FAST_PURE=1`` forces pure Python (as psycopg's ``PSYCOPG_IMPL`` and
multidict's ``MULTIDICT_NO_EXTENSIONS`` do); the two give the same results.
"""

from __future__ import annotations

import importlib
import logging
import os
from types import ModuleType

_c: ModuleType | None
try:
    _c = importlib.import_module("syncwd_fast._speedups")
except ImportError:  # not built: no compiler at install time, or a source checkout
    _c = None

PURE_ENV = "SYNCWD_FAST_PURE"
FORCED_PURE = os.environ.get(PURE_ENV, "").strip().lower() not in ("", "0", "false", "no")

#: "c" or "python": the implementation in use.
ACTIVE = "c" if _c is not None and not FORCED_PURE else "python"


def module() -> ModuleType:
    """The C module; only where ACTIVE is "c" (or a test asks for it)."""
    if _c is None:
        raise RuntimeError("syncwd_fast._speedups is not built")
    return _c


def available() -> bool:
    return _c is not None


_said = False


def say_if_missing() -> None:
    """Log once per process that the C speedup is not built (pip hides the
    build's own message unless asked to be verbose)."""
    global _said
    if _c is None and not _said:
        _said = True
        logging.getLogger("syncwd_fast").warning(
            "the C speedup is not built (no compiler at install?): the drain runs its pure-Python twin, slower,"
            " with the same results"
        )


def describe() -> str:
    """The implementation in use, and why when it is not C."""
    if ACTIVE == "c":
        return "c"
    if _c is not None:
        return f"python ({PURE_ENV}=1)"
    return "python (the C extension is not built)"
