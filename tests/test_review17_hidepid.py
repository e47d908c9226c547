"""Review of 9280aa7 (lease takeover of a holder that provably died).

holder.start_ticks returns None both when the pid does not run and when /proc
"cannot say" (any OSError), and holder.is_dead turns that None into "dead"
(None != start). A /proc that hides other users' processes -- hidepid=2 /
hidepid=invisible, systemd's ProtectProc=invisible, a common hardening -- makes
a LIVE holder run by another user look dead: the waiting drainer takes its
lease over at once, although the holder is alive and renewing.

The waiter runs in a private mount namespace (unshare -m) with its own proc
instance mounted hidepid=invisible (the host's /proc is untouched), as uid 0
with every capability dropped and gid 1000 (proc's gid= exemption is gid 0).
The holder is a live process of uid/gid 65534; this test renews its lease for
it, as its heartbeat would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from syncwd_fast import Syncwd, Table, holder, scripts

WAITER = r"""
import json, logging, sys
import redis
from syncwd_fast import FastDrainer, holder
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
url, dsn, prefix, table, pid = sys.argv[1:6]
print("start_ticks", holder.start_ticks(int(pid)), file=sys.stderr)
report = FastDrainer(redis.Redis.from_url(url), dsn, prefix=prefix, lease_seconds=3).drain()
t = report.tables[table]
print(json.dumps({"busy": sorted(t.busy), "upserted": report.upserted}))
"""


def _can_hide() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t proc -o hidepid=invisible proc /proc"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_hide(), reason="needs root, unshare and a proc mount with hidepid")
def test_a_live_holder_hidden_by_hidepid_is_not_taken_over(
    r: Any, db: Any, redis_url: str, dsn: str, prefix: str, schema: str
) -> None:
    db.execute(f"CREATE TABLE {schema}.hp (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.hp")
    Syncwd(r, prefix=prefix).update(t, {"id": 1, "v": 1})
    keys = t.keys(0, prefix)

    # A live holder of another user.
    live = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "60"])
    stop = threading.Event()
    lost: list[float] = []
    try:
        time.sleep(0.3)
        assert holder.start_ticks(live.pid) is not None  # alive, seen from the host's /proc
        ident = dict(holder.identity(), pid=live.pid, start=holder.start_ticks(live.pid))
        assert holder.is_dead(holder.encoded(ident)) is False  # alive, as this process sees it
        assert scripts.lease(r, keys, "acquire", "live-holder", 3000, holder.text(ident), holder.encoded(ident))

        def heartbeat() -> None:  # the live holder's heartbeat
            while not stop.wait(0.2):
                if not scripts.lease(r, keys, "renew", "live-holder", 3000):
                    lost.append(time.monotonic())
                    return

        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()

        inner = " ".join(
            [
                "mount -t proc -o hidepid=invisible proc /proc &&",
                "exec setpriv --regid=1000 --clear-groups --inh-caps=-all --bounding-set=-all",
                sys.executable,
                '-c "$0" "$@"',
            ]
        )
        out = subprocess.run(
            ["unshare", "-m", "sh", "-c", inner, WAITER, redis_url, dsn, prefix, t.name, str(live.pid)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout.strip().splitlines()[-1])
        time.sleep(0.5)
        # Expected: the holder is alive and renewing: the partition is busy,
        # nothing merged by the waiter, the holder still holds its lease.
        assert not lost, f"the live holder lost its lease; waiter said:\n{out.stderr}"
        assert r.get(keys.lease) == b"live-holder"
        assert result == {"busy": [0], "upserted": 0}, (result, out.stderr)
    finally:
        stop.set()
        live.kill()
        live.wait()
