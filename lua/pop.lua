--[[
  pop: take up to ARGV[1] ids from the run set, mark them in flight and return
  them with their current values: one round trip per batch. Renews the lease,
  and refuses to pop for a caller that lost it (fencing).

  Input:
    KEYS[1] run set             P:{T:n}:run:<run>
    KEYS[2] in-flight set       P:{T:n}:run:<run>:inflight
    KEYS[3] lease key           P:{T:n}:lease
    KEYS[4] recreated hash      P:{T:n}:recreated  id -> generation (see write.lua)
    ARGV[1] batch size          int > 0
    ARGV[2] owner token         must hold the lease
    ARGV[3] lease time in ms    the lease is renewed to this
    ARGV[4] value key prefix    P:{T:n}:v:

  Output:
    {ids, values, remaining, generations}: values[i] is false where the value
    key is missing; remaining is the size of the run set after the pop;
    generations is empty when no record of the partition is a new row after a
    delete, else generations[i] is the id's generation or false.
    -1 when the caller does not hold the lease.
]]
local rcall = redis.call
local run, inflight, lease, recreated = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local token, prefix = ARGV[2], ARGV[4]
local CHUNK = 5000 -- one call per batch of up to 5000; under Lua's unpack limit (~8000)

if rcall("GET", lease) ~= token then
  return -1
end
rcall("PEXPIRE", lease, ARGV[3])

local ids = rcall("SPOP", run, ARGV[1])
local function value_keys(first, last)
  local keys = {}
  for j = first, last do
    keys[#keys + 1] = prefix .. ids[j]
  end
  return keys
end

local function generations()
  if #ids == 0 or rcall("EXISTS", recreated) == 0 then
    return {}
  end
  local gens = {}
  for i = 1, #ids, CHUNK do
    local got = rcall("HMGET", recreated, unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
    for j = 1, #got do
      gens[#gens + 1] = got[j]
    end
  end
  return gens
end

if #ids <= CHUNK then -- the common case: no copying of values between tables
  if #ids == 0 then
    return {ids, {}, rcall("SCARD", run), {}}
  end
  rcall("SADD", inflight, unpack(ids))
  return {ids, rcall("MGET", unpack(value_keys(1, #ids))), rcall("SCARD", run), generations()}
end

local values = {}
for i = 1, #ids, CHUNK do
  local last = math.min(i + CHUNK - 1, #ids)
  rcall("SADD", inflight, unpack(ids, i, last))
  local got = rcall("MGET", unpack(value_keys(i, last)))
  for j = 1, #got do
    values[#values + 1] = got[j]
  end
end
return {ids, values, rcall("SCARD", run), generations()}
