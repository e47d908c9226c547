--[[
  write: store the latest value of many records of one partition and mark them
  dirty. SET/MSET drop any TTL, so a dirty value can never expire before a drain
  has made it durable.

  A value written over a tombstone that has not reached PostgreSQL yet starts a
  new row: its id is recorded in the recreated hash with a fresh generation, and
  the drain deletes the old row before it inserts this one, so columns the new
  record does not carry take their defaults whatever the drain's timing.
  A tombstone clears that mark (the delete wins).

  The caller sends the value keys beside the ids, so that MSET and SADD take
  ranges of ARGV as they are (no table built, no key concatenated in Lua), and
  keeps each call to a few hundred records and some tens of KiB: while a
  script runs Redis serves nobody else.

  Input:
    KEYS[1] dirty set           P:{T:n}:dirty
    KEYS[2] meta hash           P:{T:n}:meta
    KEYS[3] tombstone set       P:{T:n}:tombs      ids whose pending value is a tombstone
    KEYS[4] recreated hash      P:{T:n}:recreated  id -> generation of its new row
    ARGV[1] table entry         JSON registry entry of the table, kept in meta
                                field "table" so a drain finds the partition even
                                when the registry hash is lost
    ARGV[2] n                   how many records follow
    ARGV[3..2+2n]               key1, value1, key2, value2, ... (pairs): each value
                                key P:{T:n}:v:<id>; a value starting with "~" is a
                                tombstone
    ARGV[3+2n..2+3n]            id1, id2, ... in the same order

  Output:
    the number of records written, negated when meta held no table entry
    (the partition's first write, or its first since `tables remove`
    deleted it: the caller puts the table back in the registry at once, so a
    plain drain finds the record); or an error reply starting
    "SYNCWD_PARTITIONS" (nothing written) when meta carries an entry with
    another partition count: the table was repartitioned (`syncwd-fast tables
    repartition`) and this writer still has the old count, so its records
    would land where no drain of the new count looks.
]]
local rcall = redis.call
local dirty, meta, tombs, recreated = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local entry, n = ARGV[1], tonumber(ARGV[2])
local CHUNK = 1000 -- records per MSET/SADD: 2000 values, well under Lua's unpack limit (~8000)
local TILDE = 126 -- "~"

local current = rcall("HGET", meta, "table")
local sign = current and 1 or -1
if current ~= entry then
  if current then -- rare: options changed, or a repartition; decoded only then
    local ok, there = pcall(cjson.decode, current)
    local mine = cjson.decode(entry)
    if ok and type(there) == "table" and tonumber(there.partitions) and
        tonumber(there.partitions) ~= tonumber(mine.partitions) then
      return redis.error_reply("SYNCWD_PARTITIONS " .. tostring(there.partitions) .. " " ..
        tostring(mine.partitions))
    end
  end
  rcall("HSET", meta, "table", entry)
end

-- Rare path first: tombstones written, or values written over pending tombstones.
local has_tombs = rcall("EXISTS", tombs) == 1
local has_recreated = rcall("EXISTS", recreated) == 1
for i = 1, n do
  local id = ARGV[2 + 2 * n + i]
  if string.byte(ARGV[2 + 2 * i], 1) == TILDE then
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

for i = 1, n, CHUNK do
  local j = math.min(i + CHUNK - 1, n)
  rcall("MSET", unpack(ARGV, 1 + 2 * i, 2 + 2 * j))
  rcall("SADD", dirty, unpack(ARGV, 2 + 2 * n + i, 2 + 2 * n + j))
end
return sign * n
