--[[
  purge: drop dead-letter entries for good. Their values are what the
  application reads, so they are not deleted: they get the cache TTL, as a
  durable value would, unless a newer value is still to be drained: the id is
  dirty, in the active run set (while that set is still being read: an id
  already read counts too, so its value is left without a TTL, never lost; but
  not an id dead-lettered in that run, which was read from the set: its copy
  there is no newer value, and a newer one would be dirty) or in flight. Such
  a value has no TTL until its own ack; expiring it now would lose it before
  it is durable. A purged record with nothing newer pending is forgotten
  whole: a purged tombstone no longer makes the next write a new row
  (tombstone set and recreated mark go).

  Input:
    KEYS[1] dead-letter hash    P:{T:n}:dead  id -> entry (JSON; "run": the run it was made in)
    KEYS[2] dirty set           P:{T:n}:dirty
    KEYS[3] meta hash           P:{T:n}:meta       field "run" names the active run; cursor
                                and scan say whether its set is read through (pop.lua)
    KEYS[4] tombstone set       P:{T:n}:tombs
    KEYS[5] recreated hash      P:{T:n}:recreated
    ARGV[1] value key prefix    P:{T:n}:v:
    ARGV[2] ttl in seconds      0 keeps values without expiry
    ARGV[3] run key prefix      P:{T:n}:run:       the run set is <prefix><run>, the
                                in-flight hash <prefix><run>:inflight (pop number ->
                                ids, cmsgpack array) and the redo list <prefix><run>:redo
                                (same slot)
    ARGV[4] at most             unix seconds: only entries whose "at" (the time dead.lua
                                recorded) is at or before it are purged, so an entry made
                                again since the caller read it is kept; "" purges any
                                (an entry without a readable time is kept when given)
    ARGV[5..]                   ids to purge; none means every dead id

  Output:
    the number of entries purged.
]]
local rcall = redis.call
local dead, dirty, meta, tombs, recreated = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local prefix, ttl, run_prefix, at_most = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])

local ids = {}
if #ARGV == 4 then
  ids = rcall("HKEYS", dead)
else
  for i = 5, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
end

-- Only one run is active per partition; snapshot and ack keep meta in step
-- with the run's keys, so no other key can hold a pending id.
local run, inflight, redo
local unread = false -- the run set may hold ids not read yet
local active = rcall("HGET", meta, "run")
if active then
  run = run_prefix .. active
  inflight = run .. ":inflight"
  redo = run .. ":redo"
  local state = rcall("HMGET", meta, "cursor", "scan")
  unread = not (state[2] == "whole" and state[1] == "done")
end

local in_flight -- id -> true, read once (O(in flight)) when first needed
local function flying(id)
  if not in_flight then
    in_flight = {}
    local kind = rcall("TYPE", inflight).ok
    local records = rcall("LRANGE", redo, 0, -1)
    if kind == "hash" then
      for _, packed in ipairs(rcall("HVALS", inflight)) do
        records[#records + 1] = packed
      end
    elseif kind == "set" then -- left by an earlier version
      for _, member in ipairs(rcall("SMEMBERS", inflight)) do
        in_flight[member] = true
      end
    end
    for _, packed in ipairs(records) do
      for _, member in ipairs(cmsgpack.unpack(packed)) do
        in_flight[member] = true
      end
    end
  end
  return in_flight[id] == true
end

-- here: the entry was made in the active run (dead.lua keeps the run), whose
-- set the id was read from already.
local function pending(id, here)
  return rcall("SISMEMBER", dirty, id) == 1
    or (run ~= nil and ((unread and not here and rcall("SISMEMBER", run, id) == 1) or flying(id)))
end

local n = 0
for _, id in ipairs(ids) do
  local entry = rcall("HGET", dead, id)
  local ok, decoded = false, nil
  if entry then
    ok, decoded = pcall(cjson.decode, entry)
    if at_most and not (ok and type(decoded) == "table" and tonumber(decoded.at) and tonumber(decoded.at) <= at_most) then
      entry = nil -- younger than asked, or of no known age: kept
    end
  end
  if entry then
    rcall("HDEL", dead, id)
    n = n + 1
    local here = active ~= nil and ok and type(decoded) == "table" and decoded.run == active
    if not pending(id, here) then
      if ttl > 0 then
        rcall("EXPIRE", prefix .. id, ttl)
      end
      rcall("SREM", tombs, id)
      rcall("HDEL", recreated, id)
    end
  end
end
return n
