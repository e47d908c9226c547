"""`Table`: the one definition the write side needs, and its registry entry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from .errors import ConfigurationError
from .keys import PartitionKeys, partition_of, validate_identifier, validate_table_name

DEFAULT_TTL = 7 * 24 * 3600


@dataclass(frozen=True)
class Table:
    """A PostgreSQL table whose hot rows live in Redis.

    ``key`` names the primary-key (or unique) columns; ``ttl`` is the cache
    lifetime in seconds of a value once it is durable in PostgreSQL (0 keeps it);
    ``version_column``, when set, stops an older row from replacing a newer one.
    """

    name: str
    key: str | Sequence[str] = "id"
    partitions: int = 1
    ttl: int = DEFAULT_TTL
    version_column: str | None = None

    def __post_init__(self) -> None:
        validate_table_name(self.name)
        key = (self.key,) if isinstance(self.key, str) else tuple(self.key)
        if not key:
            raise ValueError(f"table {self.name!r}: key needs at least one column")
        for column in key:
            validate_identifier(column, "key column")
        if len(set(key)) != len(key):
            raise ValueError(f"table {self.name!r}: key columns repeat: {key}")
        object.__setattr__(self, "key", key)
        if not isinstance(self.partitions, int) or not 1 <= self.partitions <= 16384:
            raise ValueError(f"table {self.name!r}: partitions must be an int in 1..16384")
        if not isinstance(self.ttl, int) or self.ttl < 0:
            raise ValueError(f"table {self.name!r}: ttl must be an int >= 0 (seconds; 0 keeps values)")
        if self.version_column is not None:
            validate_identifier(self.version_column, "version column")

    @property
    def key_columns(self) -> tuple[str, ...]:
        return self.key  # type: ignore[return-value]

    def partition(self, record_id: str) -> int:
        return partition_of(record_id, self.partitions)

    def keys(self, partition: int, prefix: str) -> PartitionKeys:
        return PartitionKeys(prefix, self.name, partition)

    def to_registry(self) -> bytes:
        return orjson.dumps(
            {
                "partitions": self.partitions,
                "key": list(self.key_columns),
                "ttl": self.ttl,
                "version_column": self.version_column,
            }
        )

    @classmethod
    def from_registry(cls, name: str, raw: bytes | str) -> Table:
        try:
            entry = orjson.loads(raw)
            return cls(
                name,
                key=tuple(entry["key"]),
                partitions=int(entry["partitions"]),
                ttl=int(entry.get("ttl", DEFAULT_TTL)),
                version_column=entry.get("version_column"),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"registry entry of table {name!r} is not valid: {exc}") from exc
