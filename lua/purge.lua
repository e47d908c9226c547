--[[
  purge: drop dead-letter entries for good. Their values are what the
  application reads, so they are not deleted: they get the cache TTL, as a
  durable value would (unless re-dirtied meanwhile, in which case the new value
  is still to be drained).

  Input:
    KEYS[1] dead-letter hash    P:{T:n}:dead
    KEYS[2] dirty set           P:{T:n}:dirty
    ARGV[1] value key prefix    P:{T:n}:v:
    ARGV[2] ttl in seconds      0 keeps values without expiry
    ARGV[3..]                   ids to purge; none means every dead id

  Output:
    the number of entries purged.
]]
local rcall = redis.call
local dead, dirty = KEYS[1], KEYS[2]
local prefix, ttl = ARGV[1], tonumber(ARGV[2])

local ids = {}
if #ARGV == 2 then
  ids = rcall("HKEYS", dead)
else
  for i = 3, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
end
local n = 0
for _, id in ipairs(ids) do
  if rcall("HDEL", dead, id) == 1 then
    n = n + 1
    if ttl > 0 and rcall("SISMEMBER", dirty, id) == 0 then
      rcall("EXPIRE", prefix .. id, ttl)
    end
  end
end
return n
