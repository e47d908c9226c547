--[[
  write: store the latest value of many records of one partition and mark them
  dirty. SET/MSET drop any TTL, so a dirty value can never expire before a drain
  has made it durable.

  A value written over a tombstone that has not reached PostgreSQL yet starts a
  new row: its id is recorded in the recreated hash with a fresh generation, and
  the drain deletes the old row before it inserts this one, so columns the new
  record does not carry take their defaults whatever the drain's timing.
  A tombstone clears that mark (the delete wins).

  Input:
    KEYS[1] dirty set           P:{T:n}:dirty
    KEYS[2] meta hash           P:{T:n}:meta
    KEYS[3] tombstone set       P:{T:n}:tombs      ids whose pending value is a tombstone
    KEYS[4] recreated hash      P:{T:n}:recreated  id -> generation of its new row
    ARGV[1] value key prefix    P:{T:n}:v:
    ARGV[2] table entry         JSON registry entry of the table, kept in meta
                                field "table" so a drain finds the partition even
                                when the registry hash is lost
    ARGV[3], ARGV[4], ...       id1, value1, id2, value2, ... (pairs); a value
                                starting with "~" is a tombstone

  Output:
    the number of records written.
]]
local rcall = redis.call
local dirty, meta, tombs, recreated = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local prefix, entry = ARGV[1], ARGV[2]
local CHUNK = 1000 -- stays well under Lua's unpack limit (~8000 values)
local TILDE = 126 -- "~"

if rcall("HGET", meta, "table") ~= entry then
  rcall("HSET", meta, "table", entry)
end

-- Rare path first: tombstones written, or values written over pending tombstones.
local has_tombs = rcall("EXISTS", tombs) == 1
local has_recreated = rcall("EXISTS", recreated) == 1
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  if string.byte(ARGV[i + 1], 1) == TILDE then
    rcall("SADD", tombs, id)
    has_tombs = true
    if has_recreated then
      rcall("HDEL", recreated, id)
    end
  elseif has_tombs and rcall("SREM", tombs, id) == 1 then
    rcall("HSET", recreated, id, rcall("HINCRBY", meta, "generation", 1))
    has_recreated = true
  end
end

local kv, ids = {}, {}
for i = 3, #ARGV, 2 do
  kv[#kv + 1] = prefix .. ARGV[i]
  kv[#kv + 1] = ARGV[i + 1]
  ids[#ids + 1] = ARGV[i]
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
return (#ARGV - 2) / 2
