"""Deterministic rows for the two table widths, generated in chunks so that
no phase holds more than one chunk of rows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from syncwd_fast.rows import encode

WIDTHS = ("narrow", "wide")

# Column lists of CREATE TABLE: constants, never user input.
COLUMNS: dict[str, str] = {
    "narrow": "id bigint PRIMARY KEY, v bigint NOT NULL",
    "wide": (
        "id bigint PRIMARY KEY, score int NOT NULL, level int NOT NULL, name text NOT NULL,"
        " updated_at timestamptz NOT NULL, payload jsonb"
    ),
}


def column_names(width: str) -> tuple[str, ...]:
    """The columns of ``width``, in table order."""
    return tuple(part.split()[0] for part in COLUMNS[width].split(","))


def _wide(i: int, update: int) -> dict[str, Any]:
    t = (i + update * 7919) % 86_400
    return {
        "id": i,
        "score": (i * 37 + update * 1009) % 1_000_000,
        "level": update + 1,
        "name": f"player-{i:08d}",
        "updated_at": f"2026-01-{1 + update % 28:02d}T{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}Z",
        "payload": {"hp": (i * 31 + update) % 100, "gold": (i * 17 + update * 101) % 10_007, "items": [i % 7, update]},
    }


def rows(width: str, start: int, stop: int, update: int) -> list[dict[str, Any]]:
    """Records ``start..stop-1`` as written by pass ``update`` (0-based)."""
    if width == "narrow":
        return [{"id": i, "v": i * 31 + update} for i in range(start, stop)]
    if width == "wide":
        return [_wide(i, update) for i in range(start, stop)]
    raise ValueError(f"unknown width {width!r}; use one of {', '.join(WIDTHS)}")


def write_passes(width: str, records: int, updates: int, chunk: int) -> Iterator[list[dict[str, Any]]]:
    """Every write of the run, chunk by chunk: ``updates`` passes over all
    records, so each record's last write (pass ``updates - 1``) is its final value."""
    for update in range(updates):
        for start in range(0, records, chunk):
            yield rows(width, start, min(start + chunk, records), update)


def serialized(chunk: list[dict[str, Any]]) -> list[tuple[str, bytes]]:
    """(id, JSON bytes) exactly as ``Syncwd.update_many`` stores them."""
    return [(str(row["id"]), encode(row)) for row in chunk]
