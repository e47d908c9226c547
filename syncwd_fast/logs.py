"""How the command line logs: every message through ``logging`` (logger
"syncwd_fast"), as text with the time or as one JSON object per line, at the
level asked, with passwords masked in both."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from .masking import Masker, MaskingFilter

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
# Record attributes a JSON line carries when a call sets them (logging's extra=).
FIELDS = ("table", "partition", "run", "rows", "seconds")


if TYPE_CHECKING:
    _Adapter = logging.LoggerAdapter[logging.Logger]
else:  # subscriptable at run time from Python 3.11 on
    _Adapter = logging.LoggerAdapter


class Fields(_Adapter):
    """A logger whose lines carry fields of its own (``extra``: table,
    partition, run) merged with those a call gives (rows, seconds): a plain
    LoggerAdapter drops the call's before Python 3.13."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s syncwd-fast %(levelname)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z")


class JsonFormatter(logging.Formatter):
    """One object a line: time (UTC, ISO 8601), level, logger, message, and
    the fields of FIELDS a call gave."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if hasattr(record, name):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure(level: str, fmt: str, masker: Masker, stream: TextIO | None = None) -> logging.Logger:
    """The "syncwd_fast" logger writing to ``stream`` (stderr) only, as asked;
    a second call replaces the first's handler."""
    log = logging.getLogger("syncwd_fast")
    for old in [h for h in log.handlers if getattr(h, "_syncwd_cli", False)]:
        log.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._syncwd_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(MaskingFilter(masker))
    log.addHandler(handler)
    log.setLevel(level.upper())
    log.propagate = False
    return log
