--[[
  ack: after the batch's COMMIT, drop the in-flight records of its pops and
  start the cache TTL of the values that are now durable. The ids come from
  the records themselves (the caller names only the exceptions): every id of a
  record was merged, so its value gets the TTL, except the kept ones (acked,
  no TTL: the version guard skipped them, PostgreSQL holds a newer version, so
  their value was not written and must not expire as if it were durable), the
  deleted ones (their tombstones are deleted) and the done ones (a repeated
  pass found them landed, dead-lettered or held by another record of the
  caller's: no TTL, and their dead letters stay as they are). Dead-lettered
  ids left the records already (dead.lua). A record re-dirtied while its batch
  was in flight keeps no TTL and no tombstone is deleted for it (its newer
  value is still to be drained). Ids that had been dead-lettered earlier and
  now landed leave the dead hash. A new row after a delete loses its recreated
  mark once merged, unless a later delete started another generation. When the
  run set has been read through (meta cursor "done") and nothing is in flight
  or waits to be redone, the run is over: its keys go (the set by UNLINK:
  freed off the main thread) and meta forgets it.

  One call acks one or a few pops (a few hundred ids), so that it stays short;
  a merge batch is acked in several calls. A record already gone (an ack sent
  again after its reply was lost, or late after an adoption redid it) is
  skipped, with the ids it named: only ids of records found are acked.

  Input:
    KEYS[1] in-flight hash      P:{T:n}:run:<run>:inflight  pop number -> ids (cmsgpack array)
    KEYS[2] run set             P:{T:n}:run:<run>
    KEYS[3] redo list           P:{T:n}:run:<run>:redo
    KEYS[4] dirty set           P:{T:n}:dirty
    KEYS[5] meta hash           P:{T:n}:meta  fields run, cursor, scan (see pop.lua)
    KEYS[6] lease key           P:{T:n}:lease
    KEYS[7] dead-letter hash    P:{T:n}:dead
    KEYS[8] tombstone set       P:{T:n}:tombs
    KEYS[9] recreated hash      P:{T:n}:recreated
    ARGV[1] owner token         must hold the lease
    ARGV[2] value key prefix    P:{T:n}:v:
    ARGV[3] ttl in seconds      0 keeps values without expiry
    ARGV[4] run id              the run the pops came from
    ARGV[5] p                   how many pop numbers follow
    ARGV[6] k                   how many kept ids follow them
    ARGV[7] d                   how many deleted ids follow those
    ARGV[8] o                   how many done ids follow those
    ARGV[9..8+p]                the pop numbers
    ARGV[9+p..8+p+k+d+o]        the kept, deleted and done ids
    ARGV[9+p+k+d+o..]           id, generation pairs of merged new rows after a delete
                                (a generation's "@xid" suffix is ignored)

  Output:
    {more, in-flight records left}: more is 1 while the run set or the redo
    list holds ids not popped yet.
    -1 when the caller does not hold the lease (nothing is changed: the new
    holder has adopted the ids and will merge them again, idempotently).
]]
local rcall = redis.call
local inflight, run, redo, dirty, meta, lease = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local dead, tombs, recreated = KEYS[7], KEYS[8], KEYS[9]
local token, prefix, ttl, run_id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local n_pops, n_kept, n_deleted, n_done = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local CHUNK = 5000 -- under Lua's unpack limit (~8000)

if rcall("GET", lease) ~= token then
  return -1
end

local first_kept = 9 + n_pops
local first_deleted = first_kept + n_kept
local first_done = first_deleted + n_deleted
local last = first_done + n_done - 1

-- The exceptions: kept, deleted and done ids get no TTL.
local except = {}
for i = first_kept, last do
  except[ARGV[i]] = true
end
local done = {}
for i = first_done, last do
  done[ARGV[i]] = true
end

-- PEXPIREAT with a time as text: EXPIRE would be rewritten as PEXPIREAT for
-- every key, and a Lua number is converted to text again on every call.
local at
if ttl > 0 then
  local now = rcall("TIME")
  at = string.format("%d", tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + ttl * 1000)
end
local has_dead = rcall("HLEN", dead) > 0
local has_dirty = rcall("SCARD", dirty) > 0 -- nothing can be re-dirtied otherwise

-- Ids of the records found: only theirs are acked. A record already gone was
-- acked, or redone by an adoption; an ack that arrives late (its link stalled)
-- may find the id written again and snapshotted into the next run, so in no
-- dirty set: deleting its "tombstone" then would delete the newer value.
local found = {}
local named = n_deleted > 0 or #ARGV > last -- ids named beyond the pop numbers
for p = 9, 8 + n_pops do
  local packed = rcall("HGET", inflight, ARGV[p])
  if packed then
    rcall("HDEL", inflight, ARGV[p])
  end
  if packed and (has_dead or at or named) then
    local ids = cmsgpack.unpack(packed)
    if named then
      for _, id in ipairs(ids) do
        found[id] = true
      end
    end
    for i = 1, #ids, CHUNK do
      local j = math.min(i + CHUNK - 1, #ids)
      if has_dead then
        -- A done id keeps its dead letter (a repeated pass merged nothing of
        -- it), and so does a kept id whose value vanished (it never landed).
        local landed = {}
        for k = i, j do
          if not except[ids[k]] or (not done[ids[k]] and rcall("EXISTS", prefix .. ids[k]) == 1) then
            landed[#landed + 1] = ids[k]
          end
        end
        if #landed > 0 then
          rcall("HDEL", dead, unpack(landed))
        end
      end
      if at then
        if has_dirty then
          local redirtied = rcall("SMISMEMBER", dirty, unpack(ids, i, j))
          for k = i, j do
            if redirtied[k - i + 1] == 0 and not except[ids[k]] then
              rcall("PEXPIREAT", prefix .. ids[k], at)
            end
          end
        else
          for k = i, j do
            if not except[ids[k]] then
              rcall("PEXPIREAT", prefix .. ids[k], at)
            end
          end
        end
      end
    end
  end
end

if n_deleted > 0 then
  for i = first_deleted, first_done - 1, CHUNK do
    local j = math.min(i + CHUNK - 1, first_done - 1)
    local got = has_dirty and rcall("SMISMEMBER", dirty, unpack(ARGV, i, j)) or {}
    for k = i, j do
      if got[k - i + 1] ~= 1 and found[ARGV[k]] then
        rcall("DEL", prefix .. ARGV[k])
        rcall("SREM", tombs, ARGV[k])
      end
    end
  end
end

-- A mark may carry "@xid" (landing.lua): compare generations only.
local function generation(mark)
  return (string.gsub(mark, "@.*$", ""))
end
for i = last + 1, #ARGV, 2 do
  local current = found[ARGV[i]] and rcall("HGET", recreated, ARGV[i])
  if current and generation(current) == generation(ARGV[i + 1]) then
    rcall("HDEL", recreated, ARGV[i])
  end
end

local left = rcall("HLEN", inflight)
local state = rcall("HMGET", meta, "run", "cursor", "scan")
local current = state[1] == run_id
local unread
if current and state[3] == "whole" then
  unread = state[2] ~= "done"
else -- a run of a version that removed ids from the set as it read them
  unread = rcall("EXISTS", run) == 1
end
local more = (unread or rcall("LLEN", redo) > 0) and 1 or 0
if more == 0 and left == 0 and current then
  rcall("UNLINK", run)
  rcall("HDEL", meta, "run", "cursor", "server", "scan", "again", "taken")
end
return {more, left}
