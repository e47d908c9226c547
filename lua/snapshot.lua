--[[
  snapshot: start (or adopt) the run a drainer works through.

  If meta names an active run, a drainer died or stalled in it (or lost a
  pop's reply): its in-flight records go to the run's redo list, which pop.lua
  reads before the run set, and the run is adopted as it stands, its cursor
  included (the ids read before the cursor are not read again). This costs
  O(in flight), never O(run) nor O(dirty); the dirty set is left alone (the
  caller snapshots again after finishing the adopted run). A run left by a
  version that kept in-flight ids in a set has them put back into its run set
  (that version removed ids from the set as it read them: pop.lua reads such
  a set from cursor 0).
  Otherwise the dirty set is RENAMEd (O(1)) to the new run, to be read by
  cursor from "0" without removing ids (see pop.lua); writes arriving after
  this go to a fresh dirty set.

  Input:
    KEYS[1] dirty set           P:{T:n}:dirty
    KEYS[2] meta hash           P:{T:n}:meta  fields run, owner, started_at, and the read of
                                the run set: cursor, server, scan, again, taken (see pop.lua)
    KEYS[3] lease key           P:{T:n}:lease
    ARGV[1] owner token         must hold the lease
    ARGV[2] new run id          used only when there is no active run
    ARGV[3] run key prefix      P:{T:n}:run:  the run's keys are <prefix><run>,
                                <prefix><run>:inflight and <prefix><run>:redo
    ARGV[4] start time          unix seconds, recorded in meta

  Output:
    an error reply "SYNCWD_MOVING <count>" (nothing changed) when no run is
    active, the dirty set is not empty and meta carries "moving": a
    repartition to <count> partitions was cut short and must be run again;
    else {run id, size, adopted (1|0)}: size is the run set's size, plus for an
    adopted run the number of records to redo; 0 when nothing is left (an
    adopted run is then cleared). Run id is "" and size 0 when there is
    nothing to drain.
    -1 when the caller does not hold the lease.
]]
local rcall = redis.call
local dirty, meta, lease = KEYS[1], KEYS[2], KEYS[3]
local token, new_run, run_prefix = ARGV[1], ARGV[2], ARGV[3]
local CHUNK = 1000

if rcall("GET", lease) ~= token then
  return -1
end

local active = rcall("HGET", meta, "run")
if active then
  local run = run_prefix .. active
  local inflight, redo = run .. ":inflight", run .. ":redo"
  local kind = rcall("TYPE", inflight).ok
  if kind == "hash" then
    local records = rcall("HVALS", inflight)
    for i = 1, #records, CHUNK do
      rcall("RPUSH", redo, unpack(records, i, math.min(i + CHUNK - 1, #records)))
    end
  elseif kind == "set" then -- left by an earlier version: back into the run set
    local ids = rcall("SMEMBERS", inflight)
    for i = 1, #ids, CHUNK do
      rcall("SADD", run, unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
    end
    rcall("HDEL", meta, "scan") -- so pop.lua reads the set from cursor 0
  end
  rcall("DEL", inflight)
  rcall("HSET", meta, "owner", token)
  -- Ids not read yet: the set's size less those read in this pass (at least
  -- 1 until the pass is done), or for a run of a version that removed ids as
  -- it read them, the set's size.
  local state = rcall("HMGET", meta, "cursor", "scan", "taken")
  local unread
  if kind == "set" or state[2] ~= "whole" then
    unread = rcall("SCARD", run)
  elseif state[1] == "done" then
    unread = 0
  else
    unread = math.max(1, rcall("SCARD", run) - tonumber(state[3] or "0"))
  end
  local size = unread + rcall("LLEN", redo)
  if size == 0 then
    rcall("UNLINK", run)
    rcall("HDEL", meta, "run", "cursor", "server", "scan", "again", "taken")
  end
  return {active, size, 1}
end

if rcall("EXISTS", dirty) == 0 then
  return {"", 0, 0}
end
-- A repartition cut short left meta "moving" (repartition.lua): records of the
-- old count may wait here still, and a newer write of them in their new
-- partition; draining both could land the older value last. No run starts
-- until the repartition is run again and finishes.
local moving = rcall("HGET", meta, "moving")
if moving then
  return redis.error_reply("SYNCWD_MOVING " .. moving)
end
local run = run_prefix .. new_run
rcall("RENAME", dirty, run)
rcall("HSET", meta, "run", new_run, "owner", token, "started_at", ARGV[4],
  "cursor", "0", "scan", "whole", "again", 0, "taken", 0)
rcall("HDEL", meta, "server")
return {new_run, rcall("SCARD", run), 0}
