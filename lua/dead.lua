--[[
  dead: move ids to the dead-letter hash, each with its current value and the
  reason it could not be merged, and take them out of the in-flight records
  of their pops (so a drainer stopped before its ack does not merge them
  again).
  The value key is kept and PERSISTed so that a retry can drain it once the
  cause is fixed: a TTL it may carry (e.g. given by a purge that raced this
  newer value) must not expire the only copy of a record that never reached
  PostgreSQL.

  Input:
    KEYS[1] in-flight hash      P:{T:n}:run:<run>:inflight  pop number -> ids (cmsgpack array)
    KEYS[2] dead-letter hash    P:{T:n}:dead
    KEYS[3] lease key           P:{T:n}:lease
    ARGV[1] owner token         must hold the lease
    ARGV[2] value key prefix    P:{T:n}:v:
    ARGV[3] time                unix seconds (with ARGV[4], tells this call sent again from a new failure)
    ARGV[4] run id              the run the ids were read from, kept in each entry (purge.lua:
                                an id dead-lettered in the active run was read from its set)
    ARGV[5] p                   how many pop numbers follow: the records holding the ids
    ARGV[6..5+p]                the pop numbers
    ARGV[6+p], ARGV[7+p], ...   id1, reason1, id2, reason2, ... (pairs)

  Output:
    the number of ids dead-lettered.
    -1 when the caller does not hold the lease.
]]
local rcall = redis.call
local inflight, dead, lease = KEYS[1], KEYS[2], KEYS[3]
local token, prefix, now, run_id, n_pops = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])

if rcall("GET", lease) ~= token then
  return -1
end

local gone = {}
local n = 0
for i = 6 + n_pops, #ARGV, 2 do
  local id, reason = ARGV[i], ARGV[i + 1]
  local attempts = 1
  local previous = rcall("HGET", dead, id)
  if previous then
    local ok, entry = pcall(cjson.decode, previous)
    if ok and type(entry) == "table" and tonumber(entry.attempts) then
      attempts = tonumber(entry.attempts)
      -- The same call sent again (its reply was lost) finds its own entry:
      -- same time, same run. Only a new failure counts another attempt.
      if entry.at ~= now or entry.run ~= run_id then
        attempts = attempts + 1
      end
    end
  end
  local value = rcall("GET", prefix .. id)
  if value then
    rcall("PERSIST", prefix .. id)
  else
    value = cjson.null
  end
  rcall("HSET", dead, id, cjson.encode({value = value, error = reason, at = now, attempts = attempts, run = run_id}))
  gone[id] = true
  n = n + 1
end

for i = 6, 5 + n_pops do
  local packed = rcall("HGET", inflight, ARGV[i])
  if packed then
    local kept = {}
    for _, id in ipairs(cmsgpack.unpack(packed)) do
      if not gone[id] then
        kept[#kept + 1] = id
      end
    end
    if #kept == 0 then
      rcall("HDEL", inflight, ARGV[i])
    else
      rcall("HSET", inflight, ARGV[i], cmsgpack.pack(kept))
    end
  end
end
return n
