--[[
  pop: take about ARGV[1] more ids of the run and record them in flight as one
  record (one hash field holding the ids): one short call. The caller reads
  their values with a plain MGET right after (outside the script, which would
  copy every value through Lua): a value written since is the newer one, and
  its write re-dirtied the id, so the ack gives it no TTL. A merge batch is
  filled by several pops.

  Ids come first from the redo list (the in-flight records of a drainer that
  stopped, put there by snapshot.lua), then from the run set, read by SSCAN
  from the cursor kept in meta and removed from it (SREM) as they go in
  flight: SPOP's guarantee (an id is in the run set, in flight, or done),
  without SPOP's cost. So no id comes out twice, and an id SSCAN passes over
  stays in the set: a cursor that no longer fits the set (Redis restarted or
  failed over: the set was rebuilt with another hash seed) may miss members in
  one pass, and the next pass, from cursor 0, finds them. COUNT is a hint (a
  small set, intset or listpack, comes back whole; a bucket may hold more):
  at most ARGV[1] ids are taken, the others stay in the set for a later pass.

  Renews the lease, and refuses to pop for a caller that lost it (fencing).

  Input:
    KEYS[1] run set             P:{T:n}:run:<run>
    KEYS[2] in-flight hash      P:{T:n}:run:<run>:inflight  pop number -> ids (cmsgpack array)
    KEYS[3] redo list           P:{T:n}:run:<run>:redo      in-flight records of an adopted run
    KEYS[4] meta hash           P:{T:n}:meta  fields run, cursor (SSCAN cursor of the run set),
                                pops (counter naming in-flight records, kept at or
                                above the server clock in microseconds)
    KEYS[5] lease key           P:{T:n}:lease
    KEYS[6] recreated hash      P:{T:n}:recreated  id -> generation (see write.lua)
    ARGV[1] count               int > 0: the most ids taken (SSCAN's COUNT)
    ARGV[2] owner token         must hold the lease
    ARGV[3] lease time in ms    the lease is renewed to this
    ARGV[4] run id              meta field "run" must name it; else the run is over

  Output:
    {ids, more, generations, pop number}: more is 1 while the run set or the
    redo list holds ids not popped yet, else 0;
    generations is empty when no record of the partition is a new row after
    a delete, else generations[i] is the id's generation or false; pop number
    names the in-flight record (ack.lua and dead.lua take it), 0 when nothing
    was popped.
    -1 when the caller does not hold the lease.
]]
local rcall = redis.call
local run, inflight, redo, meta, lease, recreated = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local count, token, run_id = tonumber(ARGV[1]), ARGV[2], ARGV[4]
local CHUNK = 5000 -- under Lua's unpack limit (~8000); SSCAN may return more than COUNT

if rcall("GET", lease) ~= token then
  return -1
end
rcall("PEXPIRE", lease, ARGV[3])

local state = rcall("HMGET", meta, "run", "cursor")
if state[1] ~= run_id then
  return {{}, 0, {}, 0}
end
local cursor = state[2] or "0"

local ids
local packed = rcall("LPOP", redo)
if packed then
  ids = cmsgpack.unpack(packed)
  if #ids > count then
    local rest = {}
    for i = count + 1, #ids do
      rest[#rest + 1] = ids[i]
      ids[i] = nil
    end
    rcall("LPUSH", redo, cmsgpack.pack(rest))
  end
else
  ids = {}
  local calls = 0
  -- A stretch of empty buckets may yield nothing: read on a little.
  while #ids == 0 and calls < 8 and rcall("EXISTS", run) == 1 do
    local got = rcall("SSCAN", run, cursor, "COUNT", count)
    cursor, ids = got[1], got[2]
    calls = calls + 1
  end
  for i = #ids, count + 1, -1 do
    ids[i] = nil
  end
  for i = 1, #ids, CHUNK do
    rcall("SREM", run, unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
  end
  rcall("HSET", meta, "cursor", cursor)
end

local more = (rcall("EXISTS", run) == 1 or rcall("LLEN", redo) > 0) and 1 or 0
if #ids == 0 then
  return {{}, more, {}, 0}
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
return {ids, more, generations, number}
