--[[
  pop: take about ARGV[1] more ids of the run and record them in flight as one
  record (one hash field holding the ids): one short call. The caller reads
  their values with a plain MGET right after (outside the script, which would
  copy every value through Lua): a value written since is the newer one, and
  its write re-dirtied the id, so the ack gives it no TTL. A merge batch is
  filled by several pops.

  Ids come first from the redo list (the in-flight records of a drainer that
  stopped, put there by snapshot.lua), then from the run set, read by SSCAN
  from the cursor kept in meta. The run set is never changed while it is read
  (ids are not removed as they go in flight: SREM cost about 1 us per id and
  made the rest of the drain's Redis work slower still), and SSCAN returns
  every member of a set present from the start of a pass to its end, so one
  pass reads every id: the pass is over when SSCAN returns cursor 0 (meta
  cursor "done"). An id comes out twice only if the set is rehashed during the
  pass (nothing in the drain does that); it is then merged twice, idempotently.
  COUNT is a hint (a small set, intset or listpack, comes back whole; a bucket
  may hold more): ids past the count go to the redo list, popped next, as the
  cursor has moved past them.

  A cursor fits only the server that gave it: another server (Redis restarted,
  failed over, the slot moved) built the set with its own hash seed. So meta
  keeps the run_id of the server the cursor came from; on another one the pass
  starts again from cursor 0 and reads every id again, those merged already
  included (merged again with their current value, idempotently). Such a pass
  is a repeat (meta again = 1, until the run ends): a value gone since (its
  tombstone merged, its TTL run out) means the id is done, and the caller
  skips it rather than dead-letter it; so does a record to redo popped then
  (its ids may have been read again and merged already). A run started by a
  version that removed ids as it read them (no meta "scan") holds only ids not
  read yet: its pass starts from 0, not as a repeat.

  Renews the lease, and refuses to pop for a caller that lost it (fencing).

  Input:
    KEYS[1] run set             P:{T:n}:run:<run>
    KEYS[2] in-flight hash      P:{T:n}:run:<run>:inflight  pop number -> ids (cmsgpack array)
    KEYS[3] redo list           P:{T:n}:run:<run>:redo      in-flight records of an adopted run
    KEYS[4] meta hash           P:{T:n}:meta  fields run, cursor (SSCAN cursor of the run set, or
                                "done"), server (run_id of the server the cursor came from),
                                scan ("whole": the run set is read without removing ids),
                                again (1: this pass repeats ids merged before), taken (ids
                                read from the run set in this pass), pops (counter naming
                                in-flight records, kept at or above the server clock in us)
    KEYS[5] lease key           P:{T:n}:lease
    KEYS[6] recreated hash      P:{T:n}:recreated  id -> generation (see write.lua)
    ARGV[1] count               int > 0: the most ids taken (SSCAN's COUNT; the rest of a
                                redo record or of an SSCAN reply waits in the redo list)
    ARGV[2] owner token         must hold the lease
    ARGV[3] lease time in ms    the lease is renewed to this
    ARGV[4] run id              meta field "run" must name it; else the run is over

  Output:
    {ids, more, generations, pop number, again, redo}: more is 1 while the run set
    (its pass not done) or the redo list holds ids not popped yet, else 0;
    generations is empty when no record of the partition is a new row after
    a delete, else generations[i] is the id's generation or false; pop number
    names the in-flight record (ack.lua and dead.lua take it), 0 when nothing
    was popped; again is 1 during a repeated pass over the run set (a missing
    value is then an id done), else 0; redo is 1 when the ids came from the
    redo list (in a repeated pass the run set yields them again: the caller
    merges them once).
    -1 when the caller does not hold the lease.
]]
local rcall = redis.call
local run, inflight, redo, meta, lease, recreated = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local count, token, run_id = tonumber(ARGV[1]), ARGV[2], ARGV[4]
local CHUNK = 5000 -- under Lua's unpack limit (~8000)

if rcall("GET", lease) ~= token then
  return -1
end
rcall("PEXPIRE", lease, ARGV[3])

local state = rcall("HMGET", meta, "run", "cursor", "server", "scan", "again")
if state[1] ~= run_id then
  return {{}, 0, {}, 0, 0}
end
local cursor, again = state[2] or "0", state[5] or "0"
if state[4] ~= "whole" then -- left by a version that removed ids as it read them
  cursor, again = "0", "0"
  rcall("HSET", meta, "scan", "whole", "cursor", cursor, "again", again, "taken", 0)
end

local ids
local packed = rcall("LPOP", redo)
if packed then
  ids = cmsgpack.unpack(packed)
elseif cursor ~= "done" then
  local server = string.match(rcall("INFO", "server"), "run_id:(%x+)")
  if cursor ~= "0" and state[3] ~= server then
    -- The cursor came from another server: read the whole set again.
    cursor, again = "0", "1"
    rcall("HSET", meta, "again", again, "taken", 0)
  end
  local calls = 0
  -- A stretch of empty buckets may yield nothing: read on a little.
  repeat
    local got = rcall("SSCAN", run, cursor, "COUNT", count)
    cursor, ids = got[1], got[2]
    calls = calls + 1
  until #ids > 0 or cursor == "0" or calls == 8
  if cursor == "0" then
    cursor = "done"
  end
  rcall("HSET", meta, "cursor", cursor, "server", server)
  rcall("HINCRBY", meta, "taken", #ids)
else
  ids = {}
end
-- At most count ids: the rest wait in the redo list, popped next (the cursor
-- has moved past them).
if #ids > count then
  local rest = {}
  for i = count + 1, #ids do
    rest[#rest + 1] = ids[i]
    ids[i] = nil
  end
  rcall("LPUSH", redo, cmsgpack.pack(rest))
end

local more = (cursor ~= "done" or rcall("LLEN", redo) > 0) and 1 or 0
if #ids == 0 then
  return {{}, more, {}, 0, 0}
end
-- Numbers never below the clock (in us): a Redis that came back from an older
-- RDB, or a replica a few writes behind, rolled the counter back, and a number
-- it gave again would name a pop the drainer still holds, whose ack would then
-- drop this record (ids never merged). Formatted with %d: Lua writes 16 digits as 1.7e+15.
local now = rcall("TIME")
local number = math.max(rcall("HINCRBY", meta, "pops", 1), tonumber(now[1]) * 1000000 + tonumber(now[2]))
number = string.format("%d", number)
rcall("HSET", meta, "pops", number)
rcall("HSET", inflight, number, cmsgpack.pack(ids))

local generations = {}
if rcall("EXISTS", recreated) == 1 then
  for i = 1, #ids, CHUNK do
    local got = rcall("HMGET", recreated, unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
    for j = 1, #got do
      generations[i + j - 1] = got[j]
    end
  end
end
return {ids, more, generations, number, tonumber(again), packed and 1 or 0}
