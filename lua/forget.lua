--[[
  forget: delete values of a table being removed (`syncwd-fast tables
  remove`), a SCAN page at a time, under the remover's lease. A value whose id
  is dirty is kept: it was written after the partition's bookkeeping was
  deleted (remove.lua), by a writer that still writes the table, and it waits
  for a drain like any new record.

  Input:
    KEYS[1] lease               P:{T:n}:lease
    KEYS[2] dirty set           P:{T:n}:dirty
    ARGV[1] owner token         the remover's lease token
    ARGV[2] mode                "all": every value; "untimed": only values
                                without a TTL (those of records dropped with
                                --force, and values kept without one, which
                                would never go)
    ARGV[3] value key prefix    P:{T:n}:v:
    ARGV[4..] ids

  Output:
    -1 the caller does not hold the lease (nothing changed), else the number
    of values deleted.
]]
local rcall = redis.call
local lease, dirty = KEYS[1], KEYS[2]
local token, mode, value_prefix = ARGV[1], ARGV[2], ARGV[3]

if rcall("GET", lease) ~= token then
  return -1
end
local n = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  if rcall("SISMEMBER", dirty, id) == 0 then
    local key = value_prefix .. id
    if mode == "all" or rcall("PTTL", key) == -1 then
      n = n + rcall("UNLINK", key)
    end
  end
end
return n
