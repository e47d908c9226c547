--[[
  write: store the latest value of many records of one partition and mark them
  dirty. SET/MSET drop any TTL, so a dirty value can never expire before a drain
  has made it durable.

  Input:
    KEYS[1] dirty set           P:{T:n}:dirty
    ARGV[1] value key prefix    P:{T:n}:v:
    ARGV[2], ARGV[3], ...       id1, value1, id2, value2, ... (pairs)

  Output:
    the number of records written.
]]
local rcall = redis.call
local dirty = KEYS[1]
local prefix = ARGV[1]
local CHUNK = 1000 -- stays well under Lua's unpack limit (~8000 values)

local kv, ids, n = {}, {}, 0
for i = 2, #ARGV, 2 do
  kv[#kv + 1] = prefix .. ARGV[i]
  kv[#kv + 1] = ARGV[i + 1]
  ids[#ids + 1] = ARGV[i]
  n = n + 1
  if #ids == CHUNK then
    rcall("MSET", unpack(kv))
    rcall("SADD", dirty, unpack(ids))
    kv, ids = {}, {}
  end
end
if #ids > 0 then
  rcall("MSET", unpack(kv))
  rcall("SADD", dirty, unpack(ids))
end
return n
