"""Who holds a partition's lease, and whether that drainer provably died.

A lease names its holder in the partition's meta: ``holder`` as text for
people ("host pid N since T") and ``holder_id`` as JSON for drainers: host,
pid, the kernel's boot id, the pid namespace and the process's start time
(clock ticks since boot). A drainer on the same machine (same boot, same pid
namespace) can tell that holder died: its pid no longer runs, or now runs
another process (a different start time). It then takes the lease over at
once instead of waiting for it to expire. Anywhere else (another host or
container, an older drainer with no ``holder_id``) nothing is known, and the
lease runs out as before. A wrong guess could cost no data: every Redis
script and the COMMIT check the lease."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import orjson


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


GONE = -1  # _state: the process does not run (or is a zombie)
UNKNOWN = -2  # _state: this process cannot tell (/proc hides it, hidepid)


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), None when it does not
    run, is a zombie, or /proc cannot say."""
    state = _state(pid)
    return state if state >= 0 else None


def _state(pid: int) -> int:
    """``pid``'s start ticks, or GONE, or UNKNOWN. kill(pid, 0) says whether
    it exists whatever /proc shows (hidepid hides other users' processes:
    their /proc entry is missing though they run)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return GONE
    except PermissionError:
        pass  # it exists, another user's
    except OSError:
        return UNKNOWN
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return UNKNOWN
    # The command name (field 2) may hold spaces and parentheses: fields follow the last ")".
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[:1] in ([b"Z"], [b"X"]):  # a zombie: it ended, its parent has not reaped it yet
        return GONE
    try:
        return int(fields[19])  # field 22 of stat
    except (IndexError, ValueError):
        return UNKNOWN


def identity() -> dict[str, Any]:
    """This process, as a lease names its holder."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "boot": _boot_id(),
        "pidns": _pid_namespace(),
        "start": start_ticks(pid) or 0,
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def text(ident: dict[str, Any]) -> str:
    return f"{ident['host']} pid {ident['pid']} since {ident['since']}"


def encoded(ident: dict[str, Any], token: str | None = None) -> bytes:
    """``ident`` as meta.holder_id, naming the lease ``token`` it holds: an id
    left by an earlier holder never speaks for a later one."""
    return orjson.dumps(ident if token is None else {**ident, "token": token})


def is_dead(raw: bytes | str | None, token: bytes | str | None = None) -> bool | None:
    """True when the holder ``raw`` (a ``holder_id``) ran on this machine and
    pid namespace and its process is gone; False when it still runs; None
    when this process cannot tell (another host or namespace, /proc hiding
    it, no id, or an id written for another lease than ``token``'s: a
    drainer of an older version, which writes none, may hold the lease now)."""
    if raw is None:
        return None
    try:
        ident = orjson.loads(raw)
        pid, start = int(ident["pid"]), int(ident["start"])
        boot, pidns, host = str(ident["boot"]), int(ident["pidns"]), str(ident["host"])
        owner = ident.get("token")
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None
    if token is not None and owner != (token.decode("utf-8", "replace") if isinstance(token, bytes) else token):
        return None
    if not boot or not pidns or not start or boot != _boot_id() or pidns != _pid_namespace():
        return None
    if host != socket.gethostname():
        return None
    state = _state(pid)
    if state == UNKNOWN:
        return None
    return state != start
