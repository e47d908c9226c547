--[[
  dead: move ids from the in-flight set to the dead-letter hash, each with its
  current value and the reason it could not be merged. The value key is kept
  and PERSISTed so that a retry can drain it once the cause is fixed: a TTL it
  may carry (e.g. given by a purge that raced this newer value) must not expire
  the only copy of a record that never reached PostgreSQL.

  Input:
    KEYS[1] in-flight set       P:{T:n}:run:<run>:inflight
    KEYS[2] dead-letter hash    P:{T:n}:dead
    KEYS[3] lease key           P:{T:n}:lease
    ARGV[1] owner token         must hold the lease
    ARGV[2] value key prefix    P:{T:n}:v:
    ARGV[3] time                unix seconds
    ARGV[4], ARGV[5], ...       id1, reason1, id2, reason2, ... (pairs)

  Output:
    the number of ids dead-lettered.
    -1 when the caller does not hold the lease.
]]
local rcall = redis.call
local inflight, dead, lease = KEYS[1], KEYS[2], KEYS[3]
local token, prefix, now = ARGV[1], ARGV[2], tonumber(ARGV[3])

if rcall("GET", lease) ~= token then
  return -1
end

local n = 0
for i = 4, #ARGV, 2 do
  local id, reason = ARGV[i], ARGV[i + 1]
  local attempts = 1
  local previous = rcall("HGET", dead, id)
  if previous then
    local ok, entry = pcall(cjson.decode, previous)
    if ok and type(entry) == "table" and tonumber(entry.attempts) then
      attempts = tonumber(entry.attempts) + 1
    end
  end
  local value = rcall("GET", prefix .. id)
  if value then
    rcall("PERSIST", prefix .. id)
  else
    value = cjson.null
  end
  rcall("HSET", dead, id, cjson.encode({value = value, error = reason, at = now, attempts = attempts}))
  rcall("SREM", inflight, id)
  n = n + 1
end
return n
