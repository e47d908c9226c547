--[[
  lease: the per-partition drainer lease, a fencing token with an expiry.

  Input:
    KEYS[1] lease key           P:{T:n}:lease
    ARGV[1] operation           "acquire" | "renew" | "release"
    ARGV[2] owner token         random, one per drainer and partition
    ARGV[3] lease time in ms    (acquire, renew)

  Output:
    1 when the caller holds the lease after the call (acquire, renew) or has
    just released it (release); 0 when another owner holds it or it expired.
]]
local rcall = redis.call
local key, op, token = KEYS[1], ARGV[1], ARGV[2]

local holder = rcall("GET", key)
if op == "acquire" then
  if holder == token then
    rcall("PEXPIRE", key, ARGV[3])
    return 1
  end
  if rcall("SET", key, token, "NX", "PX", ARGV[3]) then
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
    return 1
  end
  return 0
end
return redis.error_reply("lease: unknown operation " .. tostring(op))
