--[[
  register: record a table's options in the registry (P:tables), atomically
  with the look at what is there: a writer with other options is refused,
  never silently replaced (nor does it replace another's entry between its
  read and its write).

  Input:
    KEYS[1] registry hash       P:tables  table name -> JSON entry; "~epoch"
    ARGV[1] table name
    ARGV[2] entry               JSON (Table.to_registry)
    ARGV[3] partitions          the entry's partition count
    ARGV[4] mode                "replace": replace an entry with other options
                                (never another partition count); else ""
    ARGV[5] epoch field         "~epoch" (keys.REGISTRY_EPOCH)
    ARGV[6] epoch token         set in that field when the registry has none (a new registry)

  Output:
    {0} registered (written, or there already byte for byte);
    {1, current} another entry is registered (the caller compares the two:
    the same options spelled otherwise are no conflict);
    {2, current} it has another partition count (refused even with "replace").
]]
local rcall = redis.call
local registry, name, entry, partitions, mode = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]

local current = rcall("HGET", registry, name)
if current == entry then
  return {0}
end
if current then
  local ok, existing = pcall(cjson.decode, current)
  if ok and type(existing) == "table" and tonumber(existing.partitions) and tonumber(existing.partitions) ~= partitions then
    return {2, current}
  end
  if mode ~= "replace" then
    return {1, current}
  end
end
rcall("HSET", registry, name, entry)
rcall("HSETNX", registry, ARGV[5], ARGV[6])
return {0}
