--[[
  retry: put dead-lettered records back in the dirty set, with whatever value
  they hold now. Their dead-letter entries stay until they land (ack removes
  them) or fail again (dead counts the attempt), so none vanishes unseen.

  Input:
    KEYS[1] dead-letter hash    P:{T:n}:dead
    KEYS[2] dirty set           P:{T:n}:dirty
    ARGV[1..]                   ids to retry; none means every dead id

  Output:
    the number of ids put back (ids not in the dead hash are skipped).
]]
local rcall = redis.call
local dead, dirty = KEYS[1], KEYS[2]
local CHUNK = 1000

local ids = {}
if #ARGV == 0 then
  ids = rcall("HKEYS", dead)
else
  for i = 1, #ARGV do
    if rcall("HEXISTS", dead, ARGV[i]) == 1 then
      ids[#ids + 1] = ARGV[i]
    end
  end
end
for i = 1, #ids, CHUNK do
  rcall("SADD", dirty, unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
end
return #ids
