"""The longest Redis calls a phase made, from SLOWLOG.

For the phase, redis-server logs every call over ``threshold_us`` (CONFIG SET
``slowlog-log-slower-than``, and a long ``slowlog-max-len`` so that nothing
rolls off); afterwards both settings are put back as they were. Only the
entries logged since the phase began (SLOWLOG ids grow) that touch the bench's
own keys count: the server may be shared, and others' slow calls are not the
phase's. With the number of calls the server took meanwhile (``INFO
commandstats``: ``evalsha``, ``eval``, ``mget``), the logged durations give
the p99 and p99.9 of those calls exactly when the log holds that share of
them (else they are under the threshold). Scripts are named by their SHA; the commands a script runs are
logged too (client "?:0"): they are kept apart, as part of the script's
call, never counted as calls of their own. Where CONFIG is refused (a managed
Redis), ``stats`` says so and the phase runs all the same.

    with ScriptCalls(client, "bench.wide") as calls: ...
    calls.stats  # {"by_call": {"pop": {"count": .., "max_ms": ..}, ...}, "over_2ms": .., ...}
"""

from __future__ import annotations

import math
from typing import Any

from redis.exceptions import ResponseError

from syncwd_fast import scripts

SCRIPTS = ("write", "pop", "ack", "snapshot", "lease", "dead", "landing", "retry", "purge")
BOUND_MS = 2.0


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _script_names() -> dict[str, str]:
    return {scripts.script(name).sha: name for name in SCRIPTS}


class ScriptCalls:
    def __init__(self, client: Any, prefix: str, threshold_us: int = 500) -> None:
        self.client = client
        self.prefix = prefix
        self.threshold_us = threshold_us
        self.stats: dict[str, Any] = {}
        self._saved: dict[str, str] | None = None
        self._since = -1
        self._calls = 0

    def __enter__(self) -> ScriptCalls:
        try:
            saved = self.client.config_get("slowlog-*")
            self.client.config_set("slowlog-log-slower-than", self.threshold_us)
            self.client.config_set("slowlog-max-len", max(100_000, int(saved.get("slowlog-max-len", 0))))
            self._saved = {k: _text(v) for k, v in saved.items()}
        except ResponseError as exc:
            self.stats = {"error": f"CONFIG refused: {exc}"}
            return self
        last = self.client.execute_command("SLOWLOG", "GET", "1")
        self._since = int(last[0][0]) if last else -1
        self._calls = self._counted()
        return self

    def _counted(self) -> int:
        """Calls of the commands the drain and the write side send, so far."""
        stats = self.client.info("commandstats")
        return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval", "mget"))

    def __exit__(self, *exc: object) -> None:
        if self._saved is None:
            return
        try:
            entries = self.client.execute_command("SLOWLOG", "GET", "-1")
            self._calls = self._counted() - self._calls
        finally:
            for name in ("slowlog-log-slower-than", "slowlog-max-len"):
                self.client.config_set(name, self._saved[name])
        self.stats = self._summary(entries)

    def _summary(self, entries: list[Any]) -> dict[str, Any]:
        names = _script_names()
        prefix = self.prefix.encode()
        by_call: dict[str, dict[str, Any]] = {}  # the calls clients made
        inner_calls: dict[str, dict[str, Any]] = {}  # the commands scripts ran, for a profile
        over = 0
        durations: list[float] = []  # of the calls clients made
        for entry in entries:
            if int(entry[0]) <= self._since:
                continue
            args = [a if isinstance(a, bytes) else str(a).encode() for a in entry[3]]
            if not any(a.startswith(prefix) for a in args[1:]):
                continue  # another client's call
            command = _text(args[0]).lower()
            name = names.get(_text(args[1]), "script?") if command == "evalsha" and len(args) > 1 else command
            inner = len(entry) > 4 and entry[4] == b"?:0"  # run by a script: part of that script's call
            ms = int(entry[2]) / 1000
            call = (inner_calls if inner else by_call).setdefault(name, {"count": 0, "max_ms": 0.0})
            call["count"] += 1
            call["max_ms"] = round(max(call["max_ms"], ms), 3)
            over += not inner and ms > BOUND_MS
            if not inner:
                durations.append(ms)
        durations.sort(reverse=True)
        return {
            "threshold_ms": self.threshold_us / 1000,
            "by_call": dict(sorted(by_call.items(), key=lambda kv: -kv[1]["max_ms"])),
            "in_scripts": dict(sorted(inner_calls.items(), key=lambda kv: -kv[1]["max_ms"])),
            "longest_ms": max((c["max_ms"] for c in by_call.values()), default=0.0),
            "over_2ms": over,
            "calls": self._calls,
            "p99_ms": self._percentile(durations, 0.99),
            "p99_9_ms": self._percentile(durations, 0.999),
        }

    def _percentile(self, longest_first: list[float], q: float) -> float | None:
        """The q-quantile of the window's calls (nearest rank: the call at
        rank ceil(q x calls) from the shortest), found among the longest
        logged; None when it was not logged (then it is under the threshold)
        or no call was counted."""
        if self._calls <= 0:
            return None
        k = self._calls - math.ceil(round(q * self._calls, 6)) + 1  # its place from the longest
        return longest_first[k - 1] if k <= len(longest_first) else None
