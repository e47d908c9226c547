"""Review of 9280aa7 (lease takeover): meta.holder_id outlives the lease it
described. An expired lease (its drainer was killed) leaves holder_id behind
(only release and a new-version acquire clear it). A drainer of the version
before 9280aa7 -- same key layout 1, so it may share the prefix during a
rolling upgrade; the commit says such a drainer's lease "runs out as before" --
acquires with the old lease.lua, which writes meta.holder only. A new drainer
then reads that live old drainer's token beside the dead drainer's holder_id,
judges the holder dead and takes the live lease over at once. status shows the
live old drainer's partition in dead_holders too."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

from syncwd_fast import FastDrainer, Syncwd, Table, holder, scripts, status

# lua/lease.lua as of 9280aa7^ (the script body; its header comment left out).
OLD_LEASE = """
local rcall = redis.call
local key, meta, op, token = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local holder = rcall("GET", key)
if op == "acquire" then
  if holder == token then
    rcall("PEXPIRE", key, ARGV[3])
    return 1
  end
  if rcall("SET", key, token, "NX", "PX", ARGV[3]) then
    if meta and ARGV[4] then
      rcall("HSET", meta, "holder", ARGV[4])
    end
    return 1
  end
  return 0
elseif op == "renew" then
  if holder == token then
    rcall("PEXPIRE", key, ARGV[3])
    return 1
  end
  return 0
elseif op == "release" then
  if holder == token then
    rcall("DEL", key)
    if meta then
      rcall("HDEL", meta, "holder")
    end
    return 1
  end
  return 0
end
return redis.error_reply("lease: unknown operation " .. tostring(op))
"""


def _dead_identity() -> dict[str, Any]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    time.sleep(0.2)
    ident = dict(holder.identity(), pid=child.pid, start=holder.start_ticks(child.pid))
    child.kill()
    child.wait()
    return ident


def _setup(r: Any, db: Any, prefix: str, schema: str) -> tuple[Table, Any]:
    db.execute(f"CREATE TABLE {schema}.mv (id int PRIMARY KEY, v int)")
    t = Table(f"{schema}.mv")
    Syncwd(r, prefix=prefix).update(t, {"id": 1, "v": 1})
    keys = t.keys(0, prefix)
    # A new-version drainer held the lease and was killed -9; its lease expired.
    dead = _dead_identity()
    assert scripts.lease(r, keys, "acquire", "dead-new", 200, holder.text(dead), holder.encoded(dead))
    time.sleep(0.4)
    assert r.get(keys.lease) is None
    # An old-version drainer (before 9280aa7) takes the partition, live.
    old = r.register_script(OLD_LEASE)
    assert old(keys=[keys.lease, keys.meta], args=["acquire", "old-live", 3000, "oldhost pid 4242 since now"]) == 1
    return t, old


def test_a_live_old_version_holder_is_not_taken_over(r: Any, db: Any, dsn: str, prefix: str, schema: str) -> None:
    t, old = _setup(r, db, prefix, schema)
    keys = t.keys(0, prefix)
    stop = threading.Event()
    lost: list[float] = []

    def heartbeat() -> None:  # the old drainer's heartbeat
        while not stop.wait(0.2):
            if old(keys=[keys.lease], args=["renew", "old-live", 3000]) != 1:
                lost.append(time.monotonic())
                return

    beat = threading.Thread(target=heartbeat, daemon=True)
    beat.start()
    try:
        report = FastDrainer(r, dsn, prefix=prefix, lease_seconds=3).drain()
        time.sleep(0.5)
    finally:
        stop.set()
        beat.join()
    # Expected: a live holder that renews its lease keeps it; the partition is busy.
    assert not lost, "the live old-version holder lost its lease to a takeover"
    assert report.tables[t.name].busy == [0]
    assert report.upserted == 0


def test_status_does_not_call_a_live_old_version_holder_dead(r: Any, db: Any, prefix: str, schema: str) -> None:
    t, _ = _setup(r, db, prefix, schema)
    got = status(r, prefix=prefix)["tables"][t.name]
    assert got["leases"]  # held, by the live old drainer
    assert got["dead_holders"] == []  # observed: [0]
