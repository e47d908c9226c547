"""Keeping passwords out of messages: every error, log line and report the
CLI prints goes through `Masker`."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from psycopg.conninfo import conninfo_to_dict

MASK = "***"
_URL_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^:/@\s]*:)([^@\s]+)(@)")
_KV_PASSWORD = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)")


def mask(text: str) -> str:
    """Hide URL passwords (``scheme://user:pw@``) and ``password=...`` pairs."""
    return _KV_PASSWORD.sub(r"\1" + MASK, _URL_PASSWORD.sub(r"\1" + MASK + r"\3", text))


def passwords(source: str) -> list[str]:
    """The passwords a Redis URL or a PostgreSQL DSN/URL carries."""
    found = []
    try:
        parts = urlsplit(source)
        if parts.password:
            found.append(parts.password)
    except ValueError:
        pass
    try:
        password = conninfo_to_dict(source).get("password")
        if password:
            found.append(str(password))
    except Exception:  # a malformed DSN: the regexes still apply
        pass
    return found


class Masker:
    """Masks the generic patterns and every known password, wherever it shows up."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()

    def add(self, *sources: str | None) -> None:
        for source in sources:
            if source:
                self.secrets.update(p for p in passwords(source) if len(p) >= 3)

    def __call__(self, text: str) -> str:
        text = mask(text)
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text


class MaskingFilter(logging.Filter):
    def __init__(self, masker: Masker) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.masker(record.getMessage())
        record.args = None
        return True
