--[[
  repartition: the steps of `syncwd-fast tables repartition`, each on one
  partition, under the repartitioner's lease of it (so no drain works on it
  meanwhile). The records of a partition that belong to another under the new
  count are moved one way only: "copy" into the new partition first, then
  "drop" from the old one, so a move cut short leaves a record in both (merged
  twice, idempotently; the command run again finishes it), never in neither.

  Operations (ARGV[1]):
    "close" a partition: its meta carries the new registry entry, so write.lua
      refuses every writer that still has the old partition count (it would
      write records where no drain of the new count looks); a partition at or
      beyond the new count is marked closed (field "closed", for discovery).
      KEYS[1] lease               P:{T:n}:lease
      KEYS[2] meta hash           P:{T:n}:meta
      ARGV[2] owner token
      ARGV[3] entry               the table's new registry entry (JSON)
      ARGV[4] closed              text for meta field "closed", or "" (the
                                  partition is one of the new count: no mark)
      ARGV[5] new count           kept in meta field "moving" until "open":
                                  snapshot.lua starts no run meanwhile (a move
                                  cut short leaves records in their old
                                  partition, and a newer write of them may
                                  wait in the new one)
      Output: 1, or -1 when the caller does not hold the lease.

    "open" a partition once every record has moved: drains may start runs.
      KEYS[1] lease               P:{T:n}:lease
      KEYS[2] meta hash           P:{T:n}:meta
      ARGV[2] owner token
      Output: 1, or -1 when the caller does not hold the lease.

    "copy" records into their new partition.
      KEYS[1] lease               P:{T:n}:lease  (the new partition's)
      KEYS[2] dirty set           P:{T:n}:dirty
      KEYS[3] meta hash           P:{T:n}:meta
      KEYS[4] tombstone set       P:{T:n}:tombs
      KEYS[5] recreated hash      P:{T:n}:recreated
      ARGV[2] owner token
      ARGV[3] value key prefix    P:{T:n}:v:
      ARGV[4..] quadruples: id, value, flags, pttl. flags holds "c" for the
                                  cached value of a record that landed (copied
                                  only where the new partition has neither a
                                  value nor a dirty mark of the id, with its
                                  pttl, -1 for none), else the record waits to
                                  be drained: copied and marked dirty unless
                                  the new partition holds a newer write of it
                                  (dirty there); "r" when the old partition
                                  marked it a new row after a delete.
      Output: records copied, or -1 when the caller does not hold the lease.

    "drop" records from their old partition, each only while its value is the
      one copied (else it stays, and the next run of the command moves it).
      KEYS[1] lease               P:{T:n}:lease  (the old partition's)
      KEYS[2] dirty set           P:{T:n}:dirty
      KEYS[3] tombstone set       P:{T:n}:tombs
      KEYS[4] recreated hash      P:{T:n}:recreated
      ARGV[2] owner token
      ARGV[3] value key prefix    P:{T:n}:v:
      ARGV[4..] pairs: id, the value copied
      Output: records dropped, or -1 when the caller does not hold the lease.
]]
local rcall = redis.call
local op, token = ARGV[1], ARGV[2]
local TILDE = 126 -- "~": a tombstone

if rcall("GET", KEYS[1]) ~= token then
  return -1
end

if op == "close" then
  rcall("HSET", KEYS[2], "table", ARGV[3], "moving", ARGV[5])
  if ARGV[4] ~= "" then
    rcall("HSET", KEYS[2], "closed", ARGV[4])
  else
    rcall("HDEL", KEYS[2], "closed")
  end
  return 1
elseif op == "open" then
  rcall("HDEL", KEYS[2], "moving")
  return 1
elseif op == "copy" then
  local dirty, meta, tombs, recreated, prefix = KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[3]
  local n = 0
  for i = 4, #ARGV, 4 do
    local id, value, flags, pttl = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
    local key = prefix .. id
    local tomb = string.byte(value, 1) == TILDE
    if string.find(flags, "c", 1, true) then
      if rcall("SISMEMBER", dirty, id) == 0 and rcall("EXISTS", key) == 0 then
        if pttl and pttl > 0 then
          rcall("SET", key, value, "PX", pttl)
        else
          rcall("SET", key, value)
        end
        n = n + 1
      end
    elseif rcall("SISMEMBER", dirty, id) == 1 then
      -- A newer write is there already. Were the old one a pending delete,
      -- the newer write is a new row, as write.lua would have marked it.
      local there = rcall("GET", key)
      if tomb and there and string.byte(there, 1) ~= TILDE then
        rcall("HSET", recreated, id, rcall("HINCRBY", meta, "generation", 1))
      end
    else
      rcall("SET", key, value)
      rcall("SADD", dirty, id)
      if tomb then
        rcall("SADD", tombs, id)
        rcall("HDEL", recreated, id)
      elseif rcall("SREM", tombs, id) == 1 or string.find(flags, "r", 1, true) then
        rcall("HSET", recreated, id, rcall("HINCRBY", meta, "generation", 1))
      end
      n = n + 1
    end
  end
  return n
elseif op == "drop" then
  local dirty, tombs, recreated, prefix = KEYS[2], KEYS[3], KEYS[4], ARGV[3]
  local n = 0
  for i = 4, #ARGV, 2 do
    local id = ARGV[i]
    local key = prefix .. id
    if rcall("GET", key) == ARGV[i + 1] then
      rcall("SREM", dirty, id)
      rcall("UNLINK", key)
      rcall("SREM", tombs, id)
      rcall("HDEL", recreated, id)
      n = n + 1
    end
  end
  return n
end
return redis.error_reply("repartition: unknown operation " .. tostring(op))
