"""What a drain did: per table and in total, for people and for machines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import speedups

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_FAULT, EXIT_INTERRUPTED = 0, 1, 2, 3, 4


def dead_letter_count(n: int) -> str:
    """``n`` dead letter(s), for messages: "1 dead letter", "2 dead letters"."""
    return f"{n:,} dead letter{'' if n == 1 else 's'}"


@dataclass
class TableReport:
    table: str
    partitions: int = 0
    upserted: int = 0
    deleted: int = 0
    dead_lettered: int = 0
    skipped: int = 0  # records older than their row's version in PostgreSQL: not written
    # a repeated pass over a run (Redis restarted or failed over mid-run):
    # records it found landed already, not merged or counted again; records it
    # merged, counted in upserted/deleted, of which up to this many may have
    # landed before too (Redis lost their acks with the restart)
    already_landed: int = 0
    repeated: int = 0
    busy: list[int] = field(default_factory=list)  # partitions another drainer held
    error: str | None = None  # why the table could not be drained
    dead_letters_dropped: int = 0  # dead letters over the limits (deadlimits.py), dropped for good

    def add(
        self,
        upserted: int = 0,
        deleted: int = 0,
        dead_lettered: int = 0,
        skipped: int = 0,
        already_landed: int = 0,
        repeated: int = 0,
    ) -> None:
        self.upserted += upserted
        self.deleted += deleted
        self.dead_lettered += dead_lettered
        self.skipped += skipped
        self.already_landed += already_landed
        self.repeated += repeated

    def to_dict(self) -> dict[str, Any]:
        return {
            "partitions": self.partitions,
            "upserted": self.upserted,
            "deleted": self.deleted,
            "dead_lettered": self.dead_lettered,
            "skipped": self.skipped,
            "already_landed": self.already_landed,
            "repeated": self.repeated,
            "busy": sorted(self.busy),
            "error": self.error,
            "dead_letters_dropped": self.dead_letters_dropped,
        }


@dataclass
class DrainReport:
    tables: dict[str, TableReport] = field(default_factory=dict)
    seconds: float = 0.0
    aborted: str | None = None  # the fault that stopped the drain; all left is resumable
    interrupted: str | None = None  # the signal (or request) that stopped it early; all left is resumable
    error: str | None = None  # a usage or configuration error: nothing was drained
    warnings: list[str] = field(default_factory=list)  # things an operator should know, e.g. nothing registered

    @property
    def upserted(self) -> int:
        return sum(t.upserted for t in self.tables.values())

    @property
    def deleted(self) -> int:
        return sum(t.deleted for t in self.tables.values())

    @property
    def dead_lettered(self) -> int:
        return sum(t.dead_lettered for t in self.tables.values())

    @property
    def skipped(self) -> int:
        return sum(t.skipped for t in self.tables.values())

    @property
    def already_landed(self) -> int:
        return sum(t.already_landed for t in self.tables.values())

    @property
    def repeated(self) -> int:
        return sum(t.repeated for t in self.tables.values())

    @property
    def dead_letters_dropped(self) -> int:
        return sum(t.dead_letters_dropped for t in self.tables.values())

    @property
    def rows_per_second(self) -> float:
        return (self.upserted + self.deleted) / self.seconds if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        if self.error:
            return EXIT_USAGE
        if self.aborted:
            return EXIT_FAULT
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.dead_lettered or any(t.error for t in self.tables.values()):
            return EXIT_PARTIAL
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "upserted": self.upserted,
            "deleted": self.deleted,
            "dead_lettered": self.dead_lettered,
            "skipped": self.skipped,
            "already_landed": self.already_landed,
            "repeated": self.repeated,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "aborted": self.aborted,
            "interrupted": self.interrupted,
            "error": self.error,
            "warnings": list(self.warnings),
            "exit_code": self.exit_code,
            "speedups": speedups.ACTIVE,  # "c" or "python": which decoder ran
            "dead_letters_dropped": self.dead_letters_dropped,  # over the dead-letter limits, for good
            "tables": {name: t.to_dict() for name, t in self.tables.items()},
        }

    def summary(self) -> str:
        lines = [
            f"{self.upserted} upserted, {self.deleted} deleted, {self.dead_lettered} dead-lettered"
            + (f", {self.skipped} skipped (not written)" if self.skipped else "")
            + f" in {self.seconds:.2f}s ({self.rows_per_second:,.0f} rows/s)"
        ]
        for name, t in self.tables.items():
            line = f"  {name}: {t.upserted} upserted, {t.deleted} deleted, {t.dead_lettered} dead-lettered"
            if t.skipped:
                line += f", {t.skipped} skipped (a newer version in PostgreSQL, or nothing to change)"
            if t.busy:
                line += f"; partitions {sorted(t.busy)} busy with another drainer"
            if t.error:
                line += f"; NOT DRAINED: {t.error}"
            if t.dead_letters_dropped:
                line += f"; {dead_letter_count(t.dead_letters_dropped)} over the limits dropped for good"
            lines.append(line)
        if self.already_landed or self.repeated:
            lines.append(
                f"repeated pass (Redis restarted or failed over mid-run): {self.already_landed} found landed"
                f" already (not merged or counted again); {self.repeated} merged in it (counted above; up to"
                " that many may have landed before too, if Redis lost their acks)"
            )
        if self.error:
            lines.append(f"error: {self.error}")
        if self.aborted:
            lines.append(f"aborted: {self.aborted} (everything not yet committed stays in Redis; run the drain again)")
        if self.interrupted:
            lines.append(
                f"interrupted by {self.interrupted}: stopped after the batch in flight; everything not yet drained"
                " stays in Redis (run the drain again)"
            )
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)
