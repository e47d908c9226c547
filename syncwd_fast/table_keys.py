"""The keys of one table under a prefix, for the `tables` commands: found by
a bounded SCAN of every primary, a partition's state read from its keys, and
the partitions' leases held while a command changes them."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from . import holder, scripts
from .connection import primaries
from .errors import ConfigurationError
from .keys import PartitionKeys
from .status import read_partitions

SCAN_COUNT = 500  # keys a SCAN call looks at (as discover.py: short calls on a large keyspace)
LEASE_MS = 30_000  # the leases a `tables` command holds, renewed every few seconds while it works


def text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def scan_table(redis_client: Any, prefix: str, table: str) -> Iterator[tuple[int, str]]:
    """(partition, rest of the key after ``P:{T:n}:``) of every key of ``table``,
    in SCAN pages of every primary (a key may come twice: a slot that moved)."""
    pattern = f"{prefix}:{{{table}:*}}:*"  # names and prefixes hold no glob characters (keys.py)
    exact = re.compile(re.escape(f"{prefix}:{{{table}:") + r"(0|[1-9][0-9]{0,4})\}:(.*)\Z", re.DOTALL)
    for _, client in primaries(redis_client):
        for raw in client.scan_iter(match=pattern, count=SCAN_COUNT):
            match = exact.match(text(raw) or "")
            if match:
                yield int(match.group(1)), match.group(2)


def partitions_with_keys(redis_client: Any, prefix: str, table: str) -> set[int]:
    return {number for number, _ in scan_table(redis_client, prefix, table)}


@dataclass
class PartitionState:
    """What one partition holds now."""

    number: int
    dirty: int
    in_run: int
    inflight: int
    dead: int
    run: str | None
    entry: str | None  # meta.table: the registry entry its last writer had
    closed: str | None  # meta.closed: left beyond the count by a repartition
    held_by: str | None  # who holds its lease, if anyone
    last_finished_at: int | None

    @property
    def pending(self) -> bool:
        return bool(self.dirty or self.in_run or self.inflight or self.dead or self.run)

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.number,
            "dirty": self.dirty,
            "in_run": self.in_run,
            "inflight": self.inflight,
            "dead": self.dead,
            "run": self.run,
            "entry": self.entry,
            "closed": self.closed,
            "held_by": self.held_by,
            "last_finished_at": self.last_finished_at,
        }


def read_states(redis_client: Any, parts: Iterable[PartitionKeys]) -> list[PartitionState]:
    """Each partition's state, read as `status` reads it (status.read_partitions:
    runs of earlier versions included), and the entry and mark its meta holds."""
    keys = list(parts)
    read = read_partitions(redis_client, [("", k) for k in keys])
    pipe = redis_client.pipeline(transaction=False)
    for k in keys:
        pipe.hmget(k.meta, "table", "closed")
    marks = pipe.execute() if keys else []
    return [
        PartitionState(
            p.keys.number,
            int(p.dirty),
            p.in_run,
            p.inflight,
            int(p.dead),
            p.run,
            text(entry),
            text(closed),
            (text(p.meta["holder"]) or "a drainer") if p.lease else None,
            int(p.meta["last_finished_at"]) if p.meta["last_finished_at"] else None,
        )
        for p, (entry, closed) in zip(read, marks)
    ]


class Leases:
    """The leases of the partitions a command changes, taken all at once
    (lease.lua, as a drainer takes them, so a drain finds them held and
    reports the partitions busy), renewed while the command works, released
    at the end. A partition a live drainer holds is refused with nothing
    changed; one whose holder died on this machine is taken over."""

    def __init__(self, redis_client: Any, parts: list[PartitionKeys], what: str) -> None:
        self.redis = redis_client
        self.parts = parts
        self.what = what
        self.token = uuid.uuid4().hex
        self._held: list[PartitionKeys] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="syncwd-heartbeat", daemon=True)

    def _take(self, keys: PartitionKeys) -> bool:
        me = holder.identity()
        who, who_id = holder.text(me) + f" ({self.what})", holder.encoded(me, self.token)
        if scripts.lease(self.redis, keys, "acquire", self.token, LEASE_MS, who, who_id):
            return True
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.lease)
        pipe.hget(keys.meta, "holder_id")
        token, token_holder = pipe.execute()
        if token is not None and holder.is_dead(token_holder, token):
            return scripts.lease(self.redis, keys, "takeover", self.token, LEASE_MS, who, who_id, token)
        return False

    def __enter__(self) -> Leases:
        try:
            for keys in self.parts:
                if not self._take(keys):
                    who = text(self.redis.hget(keys.meta, "holder")) or "another drainer"
                    raise ConfigurationError(
                        f"partition {keys.number} of {keys.table} is held by {who} (a drain under way): nothing was"
                        f" changed; run `{self.what}` again once it has finished (a drainer that died on another"
                        " machine holds it until its lease runs out, within the drain's --lease-seconds)"
                    )
                self._held.append(keys)
        except BaseException:
            self.release()
            raise
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(LEASE_MS / 6000):
            for keys in list(self._held):
                try:
                    scripts.lease(self.redis, keys, "renew", self.token, LEASE_MS)
                except RedisError:
                    pass  # the scripts are fenced: a lease that lapsed stops the command there

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for keys in self._held:
            try:
                scripts.lease(self.redis, keys, "release", self.token)
            except RedisError:
                pass  # it runs out by itself
        self._held = []

    def __exit__(self, *exc: object) -> None:
        self.release()

    def lost(self, keys: PartitionKeys) -> ConfigurationError:
        return ConfigurationError(
            f"lost the lease of partition {keys.number} of {keys.table} (taken over by a drain while `{self.what}`"
            " worked): what was done so far holds, nothing is lost; run it again"
        )
