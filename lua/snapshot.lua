--[[
  snapshot: start (or adopt) the run a drainer works through.

  If meta names an active run, a drainer died or stalled in it: its in-flight
  ids go back into its run set and that run is adopted as it stands. The dirty
  set is left alone (the caller snapshots again after finishing the adopted
  run), so adoption costs O(in-flight), never O(dirty).
  Otherwise the dirty set is RENAMEd (O(1)) to the new run; writes arriving
  after this go to a fresh dirty set.

  Input:
    KEYS[1] dirty set           P:{T:n}:dirty
    KEYS[2] meta hash           P:{T:n}:meta
    KEYS[3] lease key           P:{T:n}:lease
    ARGV[1] owner token         must hold the lease
    ARGV[2] new run id          used only when there is no active run
    ARGV[3] run key prefix      P:{T:n}:run:
    ARGV[4] start time          unix seconds, recorded in meta

  Output:
    {run id, size of the run set, adopted (1|0)}; run id is "" and size 0
    when there is nothing to drain.
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
  local inflight = run .. ":inflight"
  local ids = rcall("SMEMBERS", inflight)
  for i = 1, #ids, CHUNK do
    rcall("SADD", run, unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
  end
  rcall("DEL", inflight)
  rcall("HSET", meta, "owner", token)
  local size = rcall("SCARD", run)
  if size == 0 then
    rcall("HDEL", meta, "run")
  end
  return {active, size, 1}
end

if rcall("EXISTS", dirty) == 0 then
  return {"", 0, 0}
end
local run = run_prefix .. new_run
rcall("RENAME", dirty, run)
rcall("HSET", meta, "run", new_run, "owner", token, "started_at", ARGV[4])
return {new_run, rcall("SCARD", run), 0}
